"""The embedded warehouse: one DuckDB file, RAW loaded from S3 objects streamed to disk.

A file loads in one transaction: DuckDB's strict, fully typed ``read_csv`` appends its rows,
the dataset's value rules (``VALUE_RULES``) are checked on the appended rows, and the ledger row
is inserted; any problem rolls all of it back. The data never passes through Python.

Two loads of the same file load it once: a load skips what the ledger holds, and the ledger's
primary key (S3 key, ETag) is the final guard against a concurrent load of the same file (a
duplicate key rolls the file back and counts as already loaded). Only one process can open the
file; others wait up to ``busy_timeout`` and then fail with ``WarehouseBusyError``.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from pydantic import Field

from movielens_assets.datasets import DATASETS, LEDGER_TABLE, METADATA_COLUMNS, Dataset
from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.progress import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_STEP_PERCENT,
    logged_progress,
)
from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import (
    REJECTIONS_TABLE,
    VALUE_RULES,
    BadFileError,
    FileLoad,
    LoadError,
    LoadReport,
    RejectedFile,
    ValueRule,
    Warehouse,
    WarehouseBusyError,
    new_objects,
    on_error_from_env,
    rejection_rows,
)
from movielens_assets.warehouse.csv_files import (
    RELOAD_HINT,
    check_header,
    check_not_empty,
    shown,
)

RAW_SCHEMA = "raw"
MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line a file may have: 16 MiB, Snowflake's default VARCHAR size, so both
warehouses load the same files. A longer line is a bad file (usually a quote never closed)."""
SCRATCH_DIR = ".load-scratch"
"""Beside the DuckDB file: where objects are downloaded before DuckDB reads them."""
GZIP_MAGIC = b"\x1f\x8b"


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

REJECTIONS_DDL = f"""
create table if not exists {RAW_SCHEMA}.{REJECTIONS_TABLE} (
    dataset varchar not null,
    s3_key varchar not null,
    etag varchar not null,
    error varchar not null,
    line bigint,
    column_name varchar,
    on_error varchar not null,
    run_id varchar,
    rejected_at timestamp not null
)
"""
"""The files the last load of each dataset rejected; each load replaces its dataset's rows."""


def read_csv_sql(dataset: Dataset) -> str:
    """A strict, fully typed ``read_csv`` of one file (path bound as parameter ``$path``)."""
    columns = ", ".join(f"'{column.name}': '{column.duckdb_type}'" for column in dataset.columns)
    return (
        "read_csv($path, header = true, auto_detect = false, delim = ',', quote = '\"', "
        f"escape = '\"', strict_mode = true, max_line_size = {MAX_LINE_BYTES}, "
        f"columns = {{{columns}}})"
    )


def rules_sql(rules: Sequence[ValueRule]) -> str:
    """One boolean expression: true when a row follows every rule."""
    return " and ".join(rule.sql(quote_identifier(rule.column)) for rule in rules)


# --- explaining DuckDB's CSV errors ----------------------------------------------------------


@dataclass(frozen=True)
class CsvProblem:
    """What is wrong with a file, from a DuckDB CSV error: where, what, and how to fix it."""

    line: int | None
    column: str | None
    problem: str
    hint: str


TYPE_WORDS = {
    "INTEGER": "a whole number (32-bit)",
    "BIGINT": "a whole number",
    "DOUBLE": "a number",
}


def explain_csv_error(message: str, dataset: Dataset | None = None) -> CsvProblem:
    """Line, column, problem and a fix from the message of a DuckDB CSV error.

    DuckDB's message also lists the reader's options and generic advice (relax strict mode,
    ignore errors) that would load a broken file, so only the facts are kept.
    """
    line_match = re.search(r"CSV Error on Line: (\d+)", message)
    line = int(line_match.group(1)) if line_match else None
    original = re.search(r"Original Line: ?([^\n]*)", message)
    reads = f"; the line reads: {shown(original.group(1))}" if original else ""
    header = f" {','.join(dataset.header)!r}" if dataset else ""
    columns = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", message)
    convert = re.search(
        r'converting column "([^"]+)"\. Could not convert string "(.*)" to \'(\w+)\'', message
    )
    too_long = re.search(r"Maximum line size of (\d+) bytes exceeded\. Actual Size:(\d+)", message)
    if columns:
        expected, found = int(columns.group(1)), int(columns.group(2))
        column = None
        if dataset and found < expected:
            column = dataset.header[found]
        elif found > expected:
            column = str(expected + 1)
        return CsvProblem(
            line,
            column,
            f"the line has {found} fields where the header{header} has {expected}{reads}",
            "A line may be cut short (a truncated upload) or hold an unquoted comma; quote "
            "fields that contain commas.",
        )
    if convert:
        column, value, type_name = convert.groups()
        words = TYPE_WORDS.get(type_name.upper(), type_name)
        return CsvProblem(
            line,
            column,
            f'could not convert "{shown(value)}" to {type_name} ({words}){reads}',
            f"{column} must be {words}"
            + (" of unix seconds." if column == "timestamp" else ".")
            + (" The value may also hold bytes that are not UTF-8." if "?" in value else ""),
        )
    if "unterminated quote" in message:
        return CsvProblem(
            line,
            None,
            f"a quoted field is never closed (unterminated quote){reads}",
            'Close the quote, and write a quote inside a quoted field as two quotes ("").',
        )
    if "Invalid unicode" in message:
        return CsvProblem(
            line,
            None,
            f"the line is not valid UTF-8{reads}",
            "Re-export the file as UTF-8 (MovieLens files are UTF-8).",
        )
    if too_long:
        limit, actual = int(too_long.group(1)), int(too_long.group(2))
        return CsvProblem(
            line,
            None,
            f"the line is {actual:,} bytes long, over the limit of {limit:,} bytes{reads}",
            "A field this long is usually a quote that is never closed; fields may hold at "
            f"most {limit // (1024 * 1024)} MiB.",
        )
    if "gzip" in message.lower():
        return CsvProblem(
            line,
            None,
            f"is not a complete gzip file ({first_sentence(message)})",
            "The upload may have been cut short; compress and land the complete file again.",
        )
    if "state machine reached an invalid state" in message:
        return CsvProblem(
            line,
            None,
            "is not RFC 4180 CSV: it mixes line endings or holds a stray carriage return or quote",
            "Re-export the file with one kind of line ending (LF or CRLF) throughout.",
        )
    return CsvProblem(line, None, first_sentence(message), "")


def first_sentence(message: str) -> str:
    """The first line of a DuckDB error without its ``... Error:`` prefix."""
    first = message.strip().splitlines()[0] if message.strip() else message
    return re.sub(r"^[\w ]*Error: ", "", first).strip()


def describe_csv_error(message: str) -> tuple[int | None, str | None, str]:
    """Line, column and a one-line problem statement from a DuckDB CSV error message."""
    problem = explain_csv_error(message)
    return problem.line, problem.column, problem.problem


def is_file_problem(error: duckdb.Error) -> bool:
    """Whether a DuckDB error is about the file being read rather than the warehouse."""
    message = str(error)
    return (
        isinstance(error, duckdb.InvalidInputException | duckdb.ConversionException)
        or "CSV Error" in message
        or (isinstance(error, duckdb.IOException) and "gzip" in message.lower())
    )


# --- checks before a file is read ------------------------------------------------------------


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
            f"Name it .csv.gz only if it is gzip-compressed. {RELOAD_HINT}",
        ) from error
    if opener is open and raw.startswith(GZIP_MAGIC):
        raise BadFileError(
            key,
            "is gzip-compressed but its name does not end in .gz",
            f"Name it .csv.gz, or land it uncompressed. {RELOAD_HINT}",
            line=1,
        )
    return raw.decode("utf-8-sig", errors="replace").rstrip("\r\n")


def check_file(dataset: Dataset, key: str, path: Path) -> None:
    """Raise ``BadFileError`` for an empty file, a false ``.gz`` or a wrong header."""
    check_not_empty(dataset, key, path.stat().st_size)
    check_header(dataset, key, first_line(path, key))


# --- the resource ----------------------------------------------------------------------------


class DuckDBWarehouse(Warehouse):
    """The embedded default: RAW, dev and snapshots schemas in one DuckDB file."""

    path: str = Field(description="The DuckDB file; its name must stay warehouse.duckdb.")
    busy_timeout: float = Field(
        default=60.0,
        description="Seconds to wait for another process to release the file before failing.",
    )
    progress_interval: float = Field(
        default=DEFAULT_INTERVAL_SECONDS,
        description="Seconds between progress lines of one file's load in the run's log.",
    )
    progress_step: float = Field(
        default=DEFAULT_STEP_PERCENT,
        description="Percent a file's load advances between two of its progress lines.",
    )

    @classmethod
    def from_env(
        cls, path: str | Path, environ: Mapping[str, str] | None = None
    ) -> DuckDBWarehouse:
        """The warehouse at ``path`` with ``on_error`` from ``MOVIELENS_ON_ERROR[_<DATASET>]``."""
        env = os.environ if environ is None else environ
        return cls(path=str(path), on_error_by_dataset=on_error_from_env(env))

    @property
    def kind(self) -> str:
        """The asset kind of tables in this warehouse."""
        return "duckdb"

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file; waits while another process holds it."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        while True:
            try:
                connection = duckdb.connect(self.path, read_only=read_only)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise
                waited = time.monotonic() - started
                if waited >= self.busy_timeout:
                    holder = re.search(r"\(PID (\d+)\)", str(error))
                    raise WarehouseBusyError(
                        f"The warehouse {self.path} is busy: another process"
                        + (f" (PID {holder.group(1)})" if holder else "")
                        + f" has it open and did not release it within busy_timeout "
                        f"({self.busy_timeout:g} s). Wait for the other run to finish and try "
                        "again."
                    ) from error
                time.sleep(min(0.25, max(self.busy_timeout - waited, 0.01)))
        try:
            yield connection
        finally:
            connection.close()

    @property
    def scratch(self) -> Path:
        """Where downloads go: beside the file (not a RAM-backed /tmp), one folder per load."""
        return Path(self.path).parent / SCRATCH_DIR

    def sweep_scratch(self, log: logging.Logger | Any) -> None:
        """Delete the downloads of killed loads: folders of other processes.

        Only the process that has the file open downloads, and only while it has it open, so
        with the file open here every other process's folder is left over from a crash.
        """
        if not self.scratch.is_dir():
            return
        for folder in self.scratch.iterdir():
            if not folder.name.startswith(f"{os.getpid()}-"):
                log.info(f"removing {folder}, left over by a load that was killed")
                shutil.rmtree(folder, ignore_errors=True)

    def ensure_raw_tables(self) -> None:
        """Create the RAW schema, its tables, the ledger and the rejections if missing."""
        with self.connect() as connection:
            connection.execute(f"create schema if not exists {RAW_SCHEMA}")
            for dataset in DATASETS.values():
                connection.execute(raw_table_ddl(dataset))
            connection.execute(LEDGER_DDL)
            connection.execute(REJECTIONS_DDL)

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
        """Load the dataset's new objects, one transaction per file.

        A bad file raises ``BadFileError`` (``on_error=abort``) or is reported in
        ``LoadReport.rejected`` (``skip_file``); either way it is recorded in
        ``raw.load_rejections``, and files loaded before it stay loaded.
        """
        spec = DATASETS[dataset]
        on_error = self.on_error_for(dataset)
        report = LoadReport(dataset)
        with self.connect() as connection:
            self.sweep_scratch(log)
            pending = new_objects(objects, self.ledger(connection, dataset))
            report.skipped = [obj.key for obj in objects if obj not in pending]
            try:
                for number, obj in enumerate(pending, start=1):
                    progress = f"{number}/{len(pending)}"
                    log.info(f"{dataset}: loading file {progress} {obj.key} ({obj.size:,} bytes)")
                    try:
                        loaded = self._load_file(connection, spec, obj, s3, bucket, run_id, log)
                    except BadFileError as error:
                        report.rejected.append(
                            RejectedFile(obj.key, obj.etag, str(error), error.line, error.column)
                        )
                        if on_error == "abort":
                            raise
                        log.warning(f"{dataset}: rejected (on_error=skip_file): {error}")
                        continue
                    if loaded is None:
                        report.skipped.append(obj.key)
                        log.info(f"{dataset}: {obj.key} was loaded by a concurrent run; skipped")
                        continue
                    report.loaded.append(loaded)
                    log.info(f"{dataset}: {obj.key} loaded {loaded.rows:,} rows")
            finally:
                self._record_rejections(connection, dataset, report.rejected, on_error, run_id, log)
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
        log: logging.Logger | Any | None = None,
    ) -> FileLoad | None:
        """Download one object and load it; ``None`` if a concurrent load recorded it first."""
        suffix = ".csv.gz" if obj.key.lower().endswith(".gz") else ".csv"
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=self.scratch) as scratch:
            local = Path(scratch) / f"object{suffix}"
            s3lib.download(s3, bucket, obj.key, local)
            check_file(dataset, obj.key, local)
            if log is not None:
                log.debug(f"{dataset.name}: {obj.key} downloaded, header checked; inserting")
            cursor = connection.cursor()
            try:
                return self._insert_file(cursor, dataset, obj, local, run_id, log)
            finally:
                cursor.close()

    def _insert_file(
        self,
        cursor: duckdb.DuckDBPyConnection,
        dataset: Dataset,
        obj: S3Object,
        local: Path,
        run_id: str,
        log: logging.Logger | Any | None = None,
    ) -> FileLoad | None:
        """Rows, value rules and ledger row of one file in one transaction."""
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        table = f"{RAW_SCHEMA}.{dataset.raw_table}"
        cursor.begin()
        try:
            try:
                with self._progress(cursor, f"{dataset.name}: {obj.key}", obj.size, log):
                    rows = cursor.execute(
                        f"insert into {table} select *, $key, $loaded_at "
                        f"from {read_csv_sql(dataset)}",
                        {"path": str(local), "key": obj.key, "loaded_at": loaded_at},
                    ).fetchone()[0]
            except duckdb.Error as error:
                raise bad_csv(obj.key, dataset, error, local) from error
            if rules := VALUE_RULES.get(dataset.name):
                broken = cursor.execute(
                    f"select count(*) from {table} where _source_file = $key "
                    f"and _loaded_at = $loaded_at and not ({rules_sql(rules)})",
                    {"key": obj.key, "loaded_at": loaded_at},
                ).fetchone()[0]
                if broken:
                    _rollback(cursor)
                    raise rule_violation(cursor, dataset, rules, obj.key, local, broken)
            try:
                cursor.execute(
                    f"insert into {RAW_SCHEMA}.{LEDGER_TABLE} values (?, ?, ?, ?, ?, ?, ?)",
                    [dataset.name, obj.key, obj.etag, obj.size, rows, loaded_at, run_id],
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
        self, cursor: duckdb.DuckDBPyConnection, label: str, size: int, log: Any
    ) -> contextlib.AbstractContextManager[None]:
        """Progress lines in ``log`` of the statement ``cursor`` runs (none without a log)."""
        if log is None:
            return contextlib.nullcontext()
        # Progress tracking without DuckDB's own terminal bar: it is read from another thread.
        cursor.execute("set enable_progress_bar = true")
        cursor.execute("set enable_progress_bar_print = false")
        return logged_progress(
            cursor.query_progress, label, size, log.info, self.progress_interval, self.progress_step
        )

    def _record_rejections(
        self,
        connection: duckdb.DuckDBPyConnection,
        dataset: str,
        rejected: Sequence[RejectedFile],
        on_error: str,
        run_id: str,
        log: logging.Logger | Any,
    ) -> None:
        """Replace the dataset's rows of ``raw.load_rejections`` with this load's rejections."""
        table = f"{RAW_SCHEMA}.{REJECTIONS_TABLE}"
        cursor = connection.cursor()
        try:
            cursor.begin()
            cursor.execute(f"delete from {table} where dataset = ?", [dataset])
            if rejected:
                cursor.executemany(
                    f"insert into {table} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rejection_rows(dataset, rejected, on_error, run_id),
                )
            cursor.commit()
        except duckdb.Error as error:
            # A concurrent load of the same dataset replaced them first; its list stands.
            _rollback(cursor)
            log.warning(f"{dataset}: rejected files not recorded in {table}: {error}")
        finally:
            cursor.close()

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query on a read-only connection; its column names and rows."""
        with self.connect(read_only=True) as connection:
            result = connection.execute(sql)
            rows = result.fetchall()
            return [column[0] for column in result.description], rows

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

    def dbt_env(self, run_id: str | None = None) -> dict[str, str]:
        """dbt's profile reads the file's path from ``MOVIELENS_DUCKDB_PATH``."""
        return {"MOVIELENS_DUCKDB_PATH": str(Path(self.path).resolve())}


def _rollback(cursor: duckdb.DuckDBPyConnection) -> None:
    """Roll back the cursor's transaction if one is still open."""
    with contextlib.suppress(duckdb.TransactionException):
        cursor.rollback()


def bad_csv(key: str, dataset: Dataset, error: duckdb.Error, local: Path) -> LoadError:
    """The error for a failed ``read_csv``: a ``BadFileError`` if the file is at fault.

    The scratch copy's path means nothing to a reader and is left out of the message.
    """
    message = str(error).replace(f": {local}", "").replace(str(local), key)
    if not is_file_problem(error):
        return LoadError(
            f"{key}: the warehouse failed while loading it ({first_sentence(message)}). "
            "Nothing of this file was loaded; the file itself may be fine, so fix the warehouse "
            "(disk space, memory) and run again."
        )
    problem = explain_csv_error(message, dataset)
    hint = f"{problem.hint} {RELOAD_HINT}" if problem.hint else RELOAD_HINT
    return BadFileError(key, problem.problem, hint, line=problem.line, column=problem.column)


def rule_violation(
    cursor: duckdb.DuckDBPyConnection,
    dataset: Dataset,
    rules: Sequence[ValueRule],
    key: str,
    local: Path,
    broken: int,
) -> BadFileError:
    """A ``BadFileError`` naming the first row of the file that breaks a value rule.

    Only run once a file is known to be bad: it reads the file again, numbering its rows. The
    line is the row's number plus the header, plus the line breaks inside quoted text fields of
    the rows before it.
    """
    checks = ", ".join(rule.sql(quote_identifier(rule.column)) for rule in rules)
    row = cursor.execute(
        f"select ordinality, {', '.join(map(quote_identifier, dataset.header))}, {checks} "
        f"from {read_csv_sql(dataset)} with ordinality "
        f"where not ({rules_sql(rules)}) order by ordinality limit 1",
        {"path": str(local)},
    ).fetchone()
    width = len(dataset.columns)
    ordinality, values = row[0], dict(zip(dataset.header, row[1 : 1 + width], strict=True))
    rule = next(rule for rule, passed in zip(rules, row[1 + width :], strict=True) if not passed)
    line = ordinality + 1
    texts = [column.name for column in dataset.columns if column.duckdb_type == "varchar"]
    if texts and ordinality > 1:
        breaks = " + ".join(
            f"coalesce(length({quote_identifier(name)}) - "
            f"length(replace({quote_identifier(name)}, chr(10), '')), 0)"
            for name in texts
        )
        line += cursor.execute(
            f"select coalesce(sum({breaks}), 0) from {read_csv_sql(dataset)} with ordinality "
            "where ordinality < $row",
            {"path": str(local), "row": ordinality},
        ).fetchone()[0]
    value = values[rule.column]
    others = f" ({broken:,} rows break this rule; this is the first)" if broken > 1 else ""
    shown_row = ",".join("" if item is None else str(item) for item in values.values())
    return BadFileError(
        key,
        f"{rule.column} is {'empty' if value is None else value}, but must be "
        f"{rule.expectation}{others}; the row reads: {shown(shown_row)}",
        f"RAW only takes valid {dataset.name}: correct or drop the rows that break the rule. "
        + RELOAD_HINT,
        line=line,
        column=rule.column,
    )
