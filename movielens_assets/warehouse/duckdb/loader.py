"""The DuckDB load algorithm: each new file downloaded, checked and loaded in one transaction.

A file loads in one transaction: DuckDB's strict, fully typed ``read_csv`` appends its rows,
the dataset's value rules (``VALUE_RULES``) are checked on the appended rows, and the ledger row
is inserted; any problem rolls all of it back. The data never passes through Python.

Two loads of the same file load it once: a load skips what the ledger holds, and the ledger's
primary key (S3 key, ETag) is the final guard against a concurrent load of the same file (a
duplicate key rolls the file back and counts as already loaded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from movielens_assets.datasets import LEDGER_TABLE, Dataset
from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.progress import logged_progress
from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import (
    REJECTIONS_TABLE,
    VALUE_RULES,
    BadFileError,
    FileLoad,
    LoadReport,
    RejectedFile,
    new_objects,
    rejection_rows,
)
from movielens_assets.warehouse.duckdb.errors import bad_csv, rule_violation
from movielens_assets.warehouse.duckdb.file_checks import check_file
from movielens_assets.warehouse.duckdb.sql import RAW_SCHEMA, read_csv_sql, rules_sql


def ledger(connection: duckdb.DuckDBPyConnection, dataset: str) -> set[tuple[str, str]]:
    """The (key, ETag) pairs already loaded for a dataset."""
    rows = connection.execute(
        f"select s3_key, etag from {RAW_SCHEMA}.{LEDGER_TABLE} where dataset = ?", [dataset]
    ).fetchall()
    return {(key, etag) for key, etag in rows}


def sweep_scratch(scratch: Path, log: logging.Logger | Any) -> None:
    """Delete the downloads of killed loads: folders of other processes in ``scratch``.

    Only the process that has the file open downloads, and only while it has it open, so
    with the file open here every other process's folder is left over from a crash.
    """
    if not scratch.is_dir():
        return
    for folder in scratch.iterdir():
        if not folder.name.startswith(f"{os.getpid()}-"):
            log.info(f"removing {folder}, left over by a load that was killed")
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class FileLoader:
    """One dataset's load on an open connection to the DuckDB file."""

    connection: duckdb.DuckDBPyConnection
    scratch: Path
    """Where objects are downloaded before DuckDB reads them, one folder per load."""
    run_id: str
    log: logging.Logger | Any
    progress_interval: float
    progress_step: float

    def load(
        self, dataset: Dataset, objects: Sequence[S3Object], s3: Any, bucket: str, on_error: str
    ) -> LoadReport:
        """Load the dataset's new objects, one transaction per file.

        A bad file raises ``BadFileError`` (``on_error=abort``) or is reported in
        ``LoadReport.rejected`` (``skip_file``); either way it is recorded in
        ``raw.load_rejections``, and files loaded before it stay loaded.
        """
        connection, log, name = self.connection, self.log, dataset.name
        report = LoadReport(name)
        sweep_scratch(self.scratch, log)
        pending = new_objects(objects, ledger(connection, name))
        report.skipped = [obj.key for obj in objects if obj not in pending]
        try:
            for number, obj in enumerate(pending, start=1):
                progress = f"{number}/{len(pending)}"
                log.info(f"{name}: loading file {progress} {obj.key} ({obj.size:,} bytes)")
                try:
                    loaded = self._load_file(dataset, obj, s3, bucket)
                except BadFileError as error:
                    report.rejected.append(
                        RejectedFile(obj.key, obj.etag, str(error), error.line, error.column)
                    )
                    if on_error == "abort":
                        raise
                    log.warning(f"{name}: rejected (on_error=skip_file): {error}")
                    continue
                if loaded is None:
                    report.skipped.append(obj.key)
                    log.info(f"{name}: {obj.key} was loaded by a concurrent run; skipped")
                    continue
                report.loaded.append(loaded)
                log.info(f"{name}: {obj.key} loaded {loaded.rows:,} rows")
        finally:
            self._record_rejections(name, report.rejected, on_error)
        report.table_rows = connection.execute(
            f"select count(*) from {RAW_SCHEMA}.{dataset.raw_table}"
        ).fetchall()[0][0]
        return report

    def _load_file(self, dataset: Dataset, obj: S3Object, s3: Any, bucket: str) -> FileLoad | None:
        """Download one object and load it; ``None`` if a concurrent load recorded it first."""
        suffix = ".csv.gz" if obj.key.lower().endswith(".gz") else ".csv"
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=self.scratch) as scratch:
            local = Path(scratch) / f"object{suffix}"
            s3lib.download(s3, bucket, obj.key, local)
            check_file(dataset, obj.key, local)
            if self.log is not None:
                self.log.debug(f"{dataset.name}: {obj.key} downloaded, header checked; inserting")
            cursor = self.connection.cursor()
            try:
                return self._insert_file(cursor, dataset, obj, local)
            finally:
                cursor.close()

    def _insert_file(
        self, cursor: duckdb.DuckDBPyConnection, dataset: Dataset, obj: S3Object, local: Path
    ) -> FileLoad | None:
        """Rows, value rules and ledger row of one file in one transaction."""
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        table = f"{RAW_SCHEMA}.{dataset.raw_table}"
        cursor.begin()
        try:
            try:
                with self._progress(cursor, f"{dataset.name}: {obj.key}", obj.size):
                    rows = cursor.execute(
                        f"insert into {table} select *, $key, $loaded_at "
                        f"from {read_csv_sql(dataset)}",
                        {"path": str(local), "key": obj.key, "loaded_at": loaded_at},
                    ).fetchall()[0][0]
            except duckdb.Error as error:
                raise bad_csv(obj.key, dataset, error, local) from error
            if rules := VALUE_RULES.get(dataset.name):
                broken = cursor.execute(
                    f"select count(*) from {table} where _source_file = $key "
                    f"and _loaded_at = $loaded_at and not ({rules_sql(rules)})",
                    {"key": obj.key, "loaded_at": loaded_at},
                ).fetchall()[0][0]
                if broken:
                    _rollback(cursor)
                    raise rule_violation(cursor, dataset, rules, obj.key, local, broken)
            try:
                cursor.execute(
                    f"insert into {RAW_SCHEMA}.{LEDGER_TABLE} values (?, ?, ?, ?, ?, ?, ?)",
                    [dataset.name, obj.key, obj.etag, obj.size, rows, loaded_at, self.run_id],
                )
            except duckdb.ConstraintException:
                _rollback(cursor)
                return None
            try:
                cursor.commit()
            except duckdb.TransactionException as error:
                if "constraint" not in str(error).lower():
                    raise
                return None
        except BaseException:
            _rollback(cursor)
            raise
        return FileLoad(obj.key, obj.etag, obj.size, rows, loaded_at)

    def _progress(
        self, cursor: duckdb.DuckDBPyConnection, label: str, size: int
    ) -> contextlib.AbstractContextManager[None]:
        """Progress lines in the log of the statement ``cursor`` runs (none without a log)."""
        if self.log is None:
            return contextlib.nullcontext()
        # Progress tracking without DuckDB's own terminal bar: it is read from another thread.
        cursor.execute("set enable_progress_bar = true")
        cursor.execute("set enable_progress_bar_print = false")
        return logged_progress(
            cursor.query_progress,
            label,
            size,
            self.log.info,
            self.progress_interval,
            self.progress_step,
        )

    def _record_rejections(
        self, dataset: str, rejected: Sequence[RejectedFile], on_error: str
    ) -> None:
        """Replace the dataset's rows of ``raw.load_rejections`` with this load's rejections."""
        table = f"{RAW_SCHEMA}.{REJECTIONS_TABLE}"
        cursor = self.connection.cursor()
        try:
            cursor.begin()
            cursor.execute(f"delete from {table} where dataset = ?", [dataset])
            if rejected:
                cursor.executemany(
                    f"insert into {table} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rejection_rows(dataset, rejected, on_error, self.run_id),
                )
            cursor.commit()
        except duckdb.Error as error:
            # A concurrent load of the same dataset replaced them first; its list stands.
            _rollback(cursor)
            self.log.warning(f"{dataset}: rejected files not recorded in {table}: {error}")
        finally:
            cursor.close()


def _rollback(cursor: duckdb.DuckDBPyConnection) -> None:
    """Roll back the cursor's transaction if one is still open."""
    with contextlib.suppress(duckdb.TransactionException):
        cursor.rollback()
