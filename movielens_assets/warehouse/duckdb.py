"""The embedded warehouse: one DuckDB file, RAW loaded from S3 objects streamed to disk."""

from __future__ import annotations

import gzip
import logging
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from pydantic import Field

from movielens_assets.datasets import DATASETS, LEDGER_TABLE, METADATA_COLUMNS, Dataset
from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import (
    BadFileError,
    FileLoad,
    LoadReport,
    Warehouse,
    WarehouseBusyError,
    new_objects,
)

RAW_SCHEMA = "raw"


def quote_identifier(name: str) -> str:
    """A DuckDB identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def raw_table_ddl(dataset: Dataset) -> str:
    """``create table if not exists`` for one RAW table."""
    columns = ",\n    ".join(
        f"{quote_identifier(column.name)} {column.duckdb_type}"
        for column in (*dataset.columns, *METADATA_COLUMNS)
    )
    return f"create table if not exists {RAW_SCHEMA}.{dataset.raw_table} (\n    {columns}\n)"


LEDGER_DDL = f"""
create table if not exists {RAW_SCHEMA}.{LEDGER_TABLE} (
    dataset varchar not null,
    s3_key varchar not null,
    etag varchar not null,
    size_bytes bigint not null,
    rows_loaded bigint not null,
    loaded_at timestamp not null,
    run_id varchar,
    primary key (s3_key, etag)
)
"""


def read_csv_sql(dataset: Dataset) -> str:
    """A strict, fully typed ``read_csv`` of one file (path bound as parameter ``$path``)."""
    columns = ", ".join(f"'{column.name}': '{column.duckdb_type}'" for column in dataset.columns)
    return (
        "read_csv($path, header = true, auto_detect = false, delim = ',', quote = '\"', "
        f"escape = '\"', strict_mode = true, columns = {{{columns}}})"
    )


def describe_csv_error(message: str) -> tuple[int | None, str | None, str]:
    """Line, column and a one-line problem statement from a DuckDB CSV error message.

    DuckDB's message also lists the reader's options and generic advice about type detection
    that does not apply (the types are explicit), so only the facts are kept.
    """
    line = re.search(r"CSV Error on Line: (\d+)", message)
    column = re.search(r'column "([^"]+)"', message) or re.search(r"[Cc]olumn (\w+) ", message)
    lines = [text.strip() for text in message.splitlines() if text.strip()]
    original = next((text for text in lines if text.startswith("Original Line:")), None)
    details = [
        text
        for text in lines[1:]
        if not text.startswith(("Original Line:", "Column ", "This type", "Possible", "*"))
        and " = " not in text
    ]
    problem = details[0] if details else lines[0]
    if original:
        problem += f"; the line reads: {original.removeprefix('Original Line:').strip()}"
    return (
        int(line.group(1)) if line else None,
        column.group(1) if column else None,
        problem,
    )


def first_line(path: Path, key: str) -> str:
    """The header line of a CSV file, gzip or not."""
    opener = gzip.open if key.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.readline(64 * 1024)
    except (OSError, EOFError) as error:
        raise BadFileError(
            key,
            f"cannot be read as {'gzip' if opener is gzip.open else 'a file'} ({error})",
            "Re-export the file; name it .csv.gz only if it is gzip-compressed.",
        ) from error
    return raw.decode("utf-8-sig", errors="replace").rstrip("\r\n")


def check_header(dataset: Dataset, key: str, header_line: str) -> None:
    """Raise ``BadFileError`` unless the header is exactly the GroupLens header."""
    expected = ",".join(dataset.header)
    if header_line == expected:
        return
    found = header_line.split(",")
    for position, (got, want) in enumerate(zip(found, dataset.header, strict=False), start=1):
        if got != want:
            raise BadFileError(
                key,
                f"header has {got!r} where {want!r} was expected",
                f"A {dataset.name} file must start with the header line {expected!r}.",
                line=1,
                column=f"{position}",
            )
    raise BadFileError(
        key,
        f"header has {len(found)} columns, {dataset.name} files have {len(dataset.header)}",
        f"A {dataset.name} file must start with the header line {expected!r}.",
        line=1,
    )


class DuckDBWarehouse(Warehouse):
    """The embedded default: RAW, dev and snapshots schemas in one DuckDB file."""

    path: str = Field(description="The DuckDB file; its name must stay warehouse.duckdb.")
    busy_timeout: float = Field(
        default=60.0,
        description="Seconds to wait for another process to release the file before failing.",
    )

    @property
    def kind(self) -> str:
        """The asset kind of tables in this warehouse."""
        return "duckdb"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file; waits while another process holds it."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection = duckdb.connect(self.path, read_only=read_only)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise WarehouseBusyError(
                        f"The warehouse {self.path} is busy: another process has it open "
                        f"({error}). Wait for the other run to finish and try again."
                    ) from error
                time.sleep(0.5)
        try:
            yield connection
        finally:
            connection.close()

    def ensure_raw_tables(self) -> None:
        """Create the RAW schema, its tables and the ledger if they are missing."""
        with self.connect() as connection:
            connection.execute(f"create schema if not exists {RAW_SCHEMA}")
            for dataset in DATASETS.values():
                connection.execute(raw_table_ddl(dataset))
            connection.execute(LEDGER_DDL)

    def ledger(self, connection: duckdb.DuckDBPyConnection, dataset: str) -> set[tuple[str, str]]:
        """The (key, ETag) pairs already loaded for a dataset."""
        rows = connection.execute(
            f"select s3_key, etag from {RAW_SCHEMA}.{LEDGER_TABLE} where dataset = ?", [dataset]
        ).fetchall()
        return {(key, etag) for key, etag in rows}

    def load_dataset(
        self,
        dataset: str,
        objects: Sequence[S3Object],
        s3: Any,
        bucket: str,
        run_id: str,
        log: logging.Logger | Any,
    ) -> LoadReport:
        """Load the dataset's new objects, one transaction per file."""
        spec = DATASETS[dataset]
        report = LoadReport(dataset)
        with self.connect() as connection:
            pending = new_objects(objects, self.ledger(connection, dataset))
            report.skipped = [obj.key for obj in objects if obj not in pending]
            for number, obj in enumerate(pending, start=1):
                progress = f"{number}/{len(pending)}"
                log.info(f"{dataset}: loading file {progress} {obj.key} ({obj.size:,} bytes)")
                loaded = self._load_file(connection, spec, obj, s3, bucket, run_id)
                report.loaded.append(loaded)
                log.info(f"{dataset}: {obj.key} loaded {loaded.rows:,} rows")
            report.table_rows = connection.execute(
                f"select count(*) from {RAW_SCHEMA}.{spec.raw_table}"
            ).fetchone()[0]
        return report

    def _load_file(
        self,
        connection: duckdb.DuckDBPyConnection,
        dataset: Dataset,
        obj: S3Object,
        s3: Any,
        bucket: str,
        run_id: str,
    ) -> FileLoad:
        suffix = ".csv.gz" if obj.key.lower().endswith(".gz") else ".csv"
        with tempfile.TemporaryDirectory(prefix="movielens-load-") as scratch:
            local = Path(scratch) / f"object{suffix}"
            s3lib.download(s3, bucket, obj.key, local)
            check_header(dataset, obj.key, first_line(local, obj.key))
            loaded_at = datetime.now(UTC).replace(tzinfo=None)
            cursor = connection.cursor()
            try:
                cursor.begin()
                rows = cursor.execute(
                    f"insert into {RAW_SCHEMA}.{dataset.raw_table} "
                    f"select *, $key, $loaded_at from {read_csv_sql(dataset)}",
                    {"path": str(local), "key": obj.key, "loaded_at": loaded_at},
                ).fetchone()[0]
                cursor.execute(
                    f"insert into {RAW_SCHEMA}.{LEDGER_TABLE} values (?, ?, ?, ?, ?, ?, ?)",
                    [dataset.name, obj.key, obj.etag, obj.size, rows, loaded_at, run_id],
                )
                cursor.commit()
            except duckdb.Error as error:
                cursor.rollback()
                line, column, problem = describe_csv_error(str(error))
                raise BadFileError(
                    obj.key,
                    problem,
                    "Nothing of this file was loaded. Fix the file and land it again (a new "
                    "file, or the same key with new content).",
                    line=line,
                    column=column,
                ) from error
            finally:
                cursor.close()
        return FileLoad(obj.key, obj.etag, obj.size, rows, loaded_at)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query on a read-only connection."""
        with self.connect(read_only=True) as connection:
            return connection.execute(sql).fetchall()

    def release_dbt_adapter(self, adapter: Any) -> None:
        """Close the DuckDB instance dbt-duckdb keeps open in this process.

        dagster-dbt fetches row counts through dbt's adapter in the run's process, and
        dbt-duckdb caches one DuckDB instance per process in a class-level environment that
        survives ``cleanup_connections()``. Until it is closed the file stays locked, and the
        next process (``dbt compile``, the next run) cannot open it.
        """
        environment = getattr(type(adapter.connections), "_ENV", None)
        if environment is not None:
            environment.close()

    def dbt_env(self) -> dict[str, str]:
        """dbt's profile reads the file's path from ``MOVIELENS_DUCKDB_PATH``."""
        return {"MOVIELENS_DUCKDB_PATH": str(Path(self.path).resolve())}
