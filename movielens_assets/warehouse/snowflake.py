"""The Snowflake warehouse: RAW loaded with ``COPY INTO`` from a stage on the landing bucket.

Snowflake reads the files from S3 itself, through a stage that uses a storage integration
(``snowflake/setup.sql``); no AWS key ever reaches Snowflake or this code. A load:

1. reads the project's ledger ``RAW.LOAD_LEDGER`` and keeps the objects whose (key, ETag) it
   does not hold;
2. checks each new file's header with a ranged GET of its first bytes (``SKIP_HEADER = 1``
   would otherwise skip a wrong header silently);
3. runs, in one transaction per batch of at most 1,000 files, a ``COPY INTO`` whose ``FILES``
   list names exactly those files, checks the dataset's value rules (``VALUE_RULES``) on the
   rows the COPY appended, and records one ledger row per loaded file.

A bad file (an empty file, a wrong header, a row Snowflake cannot parse, a value breaking a
rule) is handled by the dataset's ``on_error``, as on DuckDB:

- ``abort`` (``ON_ERROR = ABORT_STATEMENT``): the transaction rolls back, so nothing of the
  batch is loaded and the ledger is unchanged, and a ``BadFileError`` names the file, line and
  column;
- ``skip_file`` (``ON_ERROR = SKIP_FILE``): the other files load; a file the COPY reports as not
  ``LOADED``, or whose rows break a value rule, is reported in ``LoadReport.rejected`` and never
  reaches the ledger. A rule breaker's rows are removed by rolling the transaction back and
  running the COPY again without it, not by a DELETE: RAW stays append-only for the loader, and
  Snowflake's load metadata never records the rejected file, so it can be landed again.

Either way ``RAW.LOAD_REJECTIONS`` is replaced with the dataset's rejected files at the end of
each load, the table ``checks.py`` reads on both warehouses.

Snowflake's own load metadata (64 days) is the second guard: a file it already loaded comes back
as ``LOAD_SKIPPED`` and is not loaded twice. RAW tables are only ever created with
``create table if not exists``; ``create or replace`` would discard that load metadata.

Every statement is rendered by a pure function below, so the SQL is unit-tested without a
Snowflake account. S3 keys are data: in ``FILES`` they are escaped string literals (the list is
part of the COPY statement's text), everywhere else they are bound parameters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster_snowflake import SnowflakeResource
from pydantic import Field
from snowflake.connector.errors import Error as SnowflakeError
from snowflake.connector.errors import ProgrammingError

from movielens_assets.datasets import DATASETS, METADATA_COLUMNS, Dataset
from movielens_assets.lib.s3 import S3Object
from movielens_assets.settings import ConfigurationError, Settings
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

RAW_SCHEMA = "RAW"
LEDGER = f"{RAW_SCHEMA}.LOAD_LEDGER"
REJECTIONS = f"{RAW_SCHEMA}.{REJECTIONS_TABLE.upper()}"
DEFAULT_STAGE = f"{RAW_SCHEMA}.MOVIELENS_LANDING"
DEFAULT_FILE_FORMAT = f"{RAW_SCHEMA}.MOVIELENS_CSV"
DEFAULT_DATABASE = "MOVIELENS"
DEFAULT_WAREHOUSE = "MOVIELENS_WH"
DEFAULT_ROLE = "LOADER"
MAX_FILES_PER_COPY = 1000
"""Snowflake accepts at most 1,000 names in ``FILES = (...)``."""
HEADER_BYTES = 64 * 1024

ON_ERROR = {"abort": "ABORT_STATEMENT", "skip_file": "SKIP_FILE"}
"""The project's ``on_error`` values and the Snowflake ``ON_ERROR`` option each renders as."""

CSV_FORMAT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("type", "csv"),
    ("field_delimiter", "','"),
    ("skip_header", "1"),
    ("field_optionally_enclosed_by", "'\"'"),
    ("escape_unenclosed_field", "none"),
    ("null_if", "()"),
    ("empty_field_as_null", "true"),
    ("error_on_column_count_mismatch", "true"),
    ("encoding", "'UTF8'"),
    ("replace_invalid_characters", "false"),
    ("compression", "auto"),
)
"""The GroupLens CSV dialect as a Snowflake file format (``RAW.MOVIELENS_CSV``): comma
separated, one header line, fields optionally in double quotes with ``""`` inside, backslashes
kept as data (like DuckDB), an empty field is NULL, and a wrong column count or invalid UTF-8
is an error rather than silently repaired."""

CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
"""Characters a string literal spells as Snowflake escape sequences."""
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
STAGE_PATH = re.compile(r"^[A-Za-z0-9_\-./=]*$")


# --- rendering: pure functions -------------------------------------------------------------


def string_literal(value: str) -> str:
    """A Snowflake single-quoted string literal holding exactly ``value``.

    Inside single quotes Snowflake reads a backslash as an escape and ``''`` as one quote, so
    both are escaped, and control characters are written as escape sequences to keep the
    statement on its lines; everything else (spaces, semicolons, unicode) is literal data.
    """
    escaped = value.replace("\\", "\\\\").replace("'", "''")
    for char, sequence in CONTROL_ESCAPES.items():
        escaped = escaped.replace(char, sequence)
    return "'" + escaped + "'"


def quote_identifier(name: str) -> str:
    """The identifier Snowflake resolves the unquoted ``name`` to (upper case), double-quoted."""
    return '"' + name.upper().replace('"', '""') + '"'


def object_name(name: str) -> str:
    """A validated ``[database.]schema.object`` name, rendered unquoted (so upper case).

    Names come from configuration, not data; anything but plain identifiers is refused rather
    than quoted, so a setting cannot smuggle SQL into a statement.
    """
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(IDENTIFIER.match(part) for part in parts):
        raise ConfigurationError(
            f"{name!r} is not a Snowflake object name of the form [database.]schema.name with "
            "plain identifiers (letters, digits, _ and $)."
        )
    return ".".join(part.upper() for part in parts)


def stage_location(stage: str, path: str = "") -> str:
    """``@STAGE/path/``: a stage reference with a folder inside it."""
    path = path.strip("/")
    if not STAGE_PATH.match(path):
        raise ConfigurationError(
            f"The stage path {path!r} may only hold letters, digits and - _ . / =; rename the "
            "landing prefix (MOVIELENS_S3_PREFIX)."
        )
    return f"@{object_name(stage)}/{path}/" if path else f"@{object_name(stage)}/"


def files_clause(names: Sequence[str]) -> str:
    """``files = ('a.csv', 'b.csv')``: each name an escaped literal, relative to the stage path."""
    if not names:
        raise ValueError("FILES needs at least one file name.")
    if len(names) > MAX_FILES_PER_COPY:
        raise ValueError(
            f"FILES takes at most {MAX_FILES_PER_COPY} names, got {len(names)}; load in batches."
        )
    return "files = (" + ", ".join(string_literal(name) for name in names) + ")"


def on_error_clause(on_error: str) -> str:
    """``on_error = ABORT_STATEMENT`` (``abort``, the default) or ``SKIP_FILE`` (``skip_file``)."""
    value = ON_ERROR.get(on_error.lower()) or (
        on_error.upper() if on_error.upper() in ON_ERROR.values() else None
    )
    if value is None:
        raise ConfigurationError(
            f"on_error={on_error!r} is not one of {', '.join(ON_ERROR)} "
            f"(Snowflake: {', '.join(ON_ERROR.values())})."
        )
    return f"on_error = {value}"


def file_format_clause(file_format: str) -> str:
    """``file_format = (format_name = 'RAW.MOVIELENS_CSV')``: the named format from setup.sql."""
    return f"file_format = (format_name = {string_literal(object_name(file_format))})"


def create_file_format_sql(name: str = DEFAULT_FILE_FORMAT) -> str:
    """``create file format if not exists`` for the GroupLens CSV dialect."""
    options = "\n    ".join(f"{option} = {value}" for option, value in CSV_FORMAT_OPTIONS)
    return f"create file format if not exists {object_name(name)}\n    {options}"


def create_storage_integration_sql(name: str, aws_role_arn: str, allowed_location: str) -> str:
    """An S3 storage integration: Snowflake assumes ``aws_role_arn``; no AWS key is stored."""
    if not allowed_location.startswith("s3://"):
        raise ConfigurationError(f"{allowed_location!r} is not an s3:// location.")
    return (
        f"create storage integration if not exists {object_name(name)}\n"
        "    type = external_stage\n"
        "    storage_provider = 'S3'\n"
        "    enabled = true\n"
        f"    storage_aws_role_arn = {string_literal(aws_role_arn)}\n"
        f"    storage_allowed_locations = ({string_literal(allowed_location)})"
    )


def create_stage_sql(
    name: str, url: str, storage_integration: str, file_format: str = DEFAULT_FILE_FORMAT
) -> str:
    """An external stage on the landing bucket that authenticates through the integration."""
    if not url.startswith("s3://"):
        raise ConfigurationError(f"{url!r} is not an s3:// URL.")
    return (
        f"create stage if not exists {object_name(name)}\n"
        f"    url = {string_literal(url.rstrip('/') + '/')}\n"
        f"    storage_integration = {object_name(storage_integration)}\n"
        f"    file_format = {object_name(file_format)}"
    )


def raw_table_name(dataset: Dataset) -> str:
    """``RAW.RAW_RATINGS``."""
    return f"{RAW_SCHEMA}.{dataset.raw_table.upper()}"


def raw_table_ddl(dataset: Dataset) -> str:
    """``create table if not exists`` for one RAW table (never ``create or replace``)."""
    columns = ",\n    ".join(
        f"{quote_identifier(column.name)} {column.snowflake_type}"
        for column in (*dataset.columns, *METADATA_COLUMNS)
    )
    return f"create table if not exists {raw_table_name(dataset)} (\n    {columns}\n)"


LEDGER_DDL = f"""create table if not exists {LEDGER} (
    "DATASET" varchar not null,
    "S3_KEY" varchar not null,
    "ETAG" varchar not null,
    "SIZE_BYTES" number(38,0) not null,
    "ROWS_LOADED" number(38,0) not null,
    "LOADED_AT" timestamp_ntz not null,
    "RUN_ID" varchar,
    primary key ("S3_KEY", "ETAG")
)"""
"""The project's ledger: one row per loaded file, the same columns as DuckDB's
``raw.load_ledger``. Snowflake does not enforce the key; the loader never inserts a pair twice."""


REJECTIONS_DDL = f"""create table if not exists {REJECTIONS} (
    "DATASET" varchar not null,
    "S3_KEY" varchar not null,
    "ETAG" varchar not null,
    "ERROR" varchar not null,
    "LINE" number(38,0),
    "COLUMN_NAME" varchar,
    "ON_ERROR" varchar not null,
    "RUN_ID" varchar,
    "REJECTED_AT" timestamp_ntz not null
)"""
"""The files the last load of each dataset rejected, the same columns as DuckDB's
``raw.load_rejections``; each load replaces its dataset's rows."""


def rules_sql(rules: Sequence[ValueRule]) -> str:
    """One boolean expression: true when a row follows every rule."""
    return " and ".join(rule.sql(quote_identifier(rule.column)) for rule in rules)


def rule_breaks_sql(dataset: Dataset, key_count: int) -> str:
    """Per S3 key, the rows one COPY appended that break each value rule (one count per rule).

    Parameters: the COPY's ``_LOADED_AT``, then ``key_count`` S3 keys; only keys with at least
    one breaking row come back.
    """
    rules = VALUE_RULES[dataset.name]
    counts = ", ".join(
        f"sum(case when {rule.sql(quote_identifier(rule.column))} then 0 else 1 end)"
        for rule in rules
    )
    keys = ", ".join("?" for _ in range(key_count))
    return (
        f'select "_SOURCE_FILE", {counts}\n'
        f"from {raw_table_name(dataset)}\n"
        f'where "_LOADED_AT" = ? and "_SOURCE_FILE" in ({keys})\n'
        f"    and not ({rules_sql(rules)})\n"
        f'group by "_SOURCE_FILE"'
    )


def rule_example_sql(dataset: Dataset, rule: ValueRule) -> str:
    """One row of a file (``_LOADED_AT``, S3 key as parameters) that breaks ``rule``."""
    columns = ", ".join(quote_identifier(column.name) for column in dataset.columns)
    return (
        f"select {columns}\n"
        f"from {raw_table_name(dataset)}\n"
        f'where "_LOADED_AT" = ? and "_SOURCE_FILE" = ?\n'
        f"    and not ({rule.sql(quote_identifier(rule.column))})\n"
        "limit 1"
    )


def timestamp_literal(moment: datetime) -> str:
    """``to_timestamp_ntz('2024-05-01 12:00:00.000000')`` for a naive UTC datetime."""
    return f"to_timestamp_ntz({string_literal(moment.strftime('%Y-%m-%d %H:%M:%S.%f'))})"


def copy_into_sql(
    dataset: Dataset,
    stage: str,
    stage_path: str,
    file_names: Sequence[str],
    loaded_at: datetime,
    key_prefix: str = "",
    file_format: str = DEFAULT_FILE_FORMAT,
    on_error: str = "abort",
) -> str:
    """The ``COPY INTO`` of exactly ``file_names`` (relative to ``@stage/stage_path/``).

    The CSV columns are loaded by position; ``_SOURCE_FILE`` is the S3 key (``key_prefix``, the
    part of the key the stage URL already covers, followed by ``METADATA$FILENAME``, the path
    inside the stage) and ``_LOADED_AT`` the one timestamp the ledger rows also get.
    """
    targets = ", ".join(
        quote_identifier(column.name) for column in (*dataset.columns, *METADATA_COLUMNS)
    )
    positions = ", ".join(f"${number}" for number in range(1, len(dataset.columns) + 1))
    source_file = (
        f"concat({string_literal(key_prefix)}, metadata$filename)"
        if key_prefix
        else "metadata$filename"
    )
    return (
        f"copy into {raw_table_name(dataset)} ({targets})\n"
        f"from (\n"
        f"    select {positions}, {source_file}, {timestamp_literal(loaded_at)}\n"
        f"    from {stage_location(stage, stage_path)}\n"
        f")\n"
        f"{files_clause(file_names)}\n"
        f"{file_format_clause(file_format)}\n"
        f"{on_error_clause(on_error)}"
    )


def query_tag(run_id: str | None, asset: str | None, tool: str = "dagster") -> str:
    """The ``QUERY_TAG`` of a session: JSON naming the app, tool, Dagster run and asset."""
    tag: dict[str, str] = {"app": "movielens", "tool": tool}
    if run_id:
        tag["dagster_run_id"] = run_id
    if asset:
        tag["asset"] = asset
    return json.dumps(tag, separators=(",", ":"), sort_keys=True)


# --- COPY results and errors ---------------------------------------------------------------


@dataclass(frozen=True)
class CopyResult:
    """One row of a ``COPY INTO`` result: what Snowflake did with one file."""

    file: str
    status: str
    rows_parsed: int
    rows_loaded: int
    errors_seen: int
    first_error: str | None = None
    first_error_line: int | None = None
    first_error_column: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CopyResult:
        """From a result row keyed by lower-case column name."""
        return cls(
            file=str(row["file"]),
            status=str(row["status"]).upper(),
            rows_parsed=int(row.get("rows_parsed") or 0),
            rows_loaded=int(row.get("rows_loaded") or 0),
            errors_seen=int(row.get("errors_seen") or 0),
            first_error=row.get("first_error"),
            first_error_line=row.get("first_error_line"),
            first_error_column=row.get("first_error_column_name"),
        )

    def as_metadata(self) -> dict[str, Any]:
        """The fields shown in asset metadata."""
        return {
            "file": self.file,
            "status": self.status,
            "rows_parsed": self.rows_parsed,
            "rows_loaded": self.rows_loaded,
            "errors_seen": self.errors_seen,
            "first_error": self.first_error,
        }


@dataclass
class SnowflakeLoadReport(LoadReport):
    """A ``LoadReport`` that also carries Snowflake's per-file COPY results."""

    copy_results: list[CopyResult] = field(default_factory=list)

    def file_results(self) -> list[dict[str, Any]]:
        """COPY's result per file: status, rows parsed and loaded, errors, first error."""
        return [result.as_metadata() for result in self.copy_results]


def copy_results(cursor: Any) -> list[CopyResult]:
    """The per-file rows of a COPY's result; empty when there were no files to process."""
    names = [column[0].lower() for column in cursor.description or ()]
    if "file" not in names:
        return []
    return [CopyResult.from_row(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


def unreported(results: Sequence[CopyResult], objects: Sequence[S3Object]) -> list[S3Object]:
    """The objects a COPY was given but reported nothing about (it must report every file)."""
    reported = {id(match_file(result.file, objects)) for result in results}
    return [obj for obj in objects if id(obj) not in reported]


def match_file(result_file: str, objects: Sequence[S3Object]) -> S3Object | None:
    """The object a COPY result row is about.

    Snowflake names the file by its full URL for external stages and by ``stage/path`` for
    internal ones; both end with the S3 key or with its path inside the stage.
    """
    best: S3Object | None = None
    for obj in objects:
        key = obj.key
        if result_file == key or result_file.endswith("/" + key):
            return obj
        name = key.rsplit("/", 1)[-1]
        if result_file.endswith("/" + name) or result_file == name:
            best = best or obj
    return best


@dataclass(frozen=True)
class CopyErrorDetail:
    """What Snowflake says about the first bad row of an aborted COPY."""

    problem: str
    file: str | None = None
    line: int | None = None
    character: int | None = None
    column: str | None = None


_FILE_LINE = re.compile(r"File '(?P<file>.*)', line (?P<line>\d+), character (?P<char>\d+)")
_ROW_COLUMN = re.compile(r'Row \d+, column "[^"]*"\["?(?P<column>[^":]*)"?:(?P<position>\d+)\]')
_COLUMN_REF = re.compile(r'\["?(?P<column>[^":]*)"?:(?P<position>\d+)\]$')


def parse_copy_error(message: str) -> CopyErrorDetail:
    """File, line, character and column from the message of an aborted ``COPY INTO``.

    Snowflake's message reads like::

        Numeric value 'abc' is not recognized
          File 'ratings/bad.csv', line 3, character 9
          Row 2, column "RAW_RATINGS"["RATING":3]
          If you would like to continue loading when an error is encountered, ...
    """
    lines = [text.strip() for text in message.splitlines() if text.strip()]
    problem = re.sub(r"^\d{6} \(\w+\): ", "", lines[0]) if lines else message
    where = _FILE_LINE.search(message)
    column = _ROW_COLUMN.search(message)
    return CopyErrorDetail(
        problem=problem,
        file=where.group("file") if where else None,
        line=int(where.group("line")) if where else None,
        character=int(where.group("char")) if where else None,
        column=(f"{column.group('column')} (field {column.group('position')})" if column else None),
    )


def copy_error(error: ProgrammingError, objects: Sequence[S3Object], dataset: Dataset) -> LoadError:
    """A ``BadFileError`` naming the file, line and column of an aborted COPY."""
    detail = parse_copy_error(error.msg or str(error))
    obj = match_file(detail.file, objects) if detail.file else None
    if obj is None and len(objects) == 1:
        obj = objects[0]
    key = obj.key if obj else f"one of {len(objects)} files ({', '.join(o.key for o in objects)})"
    column = detail.column
    if column and detail.character is not None:
        column += f", character {detail.character}"
    hint = (
        "Nothing of this COPY was loaded and the ledger is unchanged. Fix the file and land it "
        "again (a new file, or the same key with new content)."
    )
    if error.sfqid:
        # VALIDATE() does not support a COPY with a transformation (ours sets _SOURCE_FILE).
        hint += f" Snowflake query id: {error.sfqid}."
    return BadFileError(
        key,
        f"is not a valid {dataset.name} CSV: {detail.problem}",
        hint,
        line=detail.line,
        column=column,
    )


def failed_file_error(
    result: CopyResult, obj: S3Object, dataset: Dataset, query_id: str | None = None
) -> BadFileError:
    """The ``BadFileError`` of a file a ``SKIP_FILE`` COPY did not load, from its result row."""
    hint = RELOAD_HINT
    if query_id:
        hint += f" Snowflake query id: {query_id}."
    problem = result.first_error or f"COPY reported it {result.status}"
    column = result.first_error_column
    if column and (reference := _COLUMN_REF.search(column)):
        column = f"{reference.group('column')} (field {reference.group('position')})"
    return BadFileError(
        obj.key,
        f"is not a valid {dataset.name} CSV: {problem}",
        hint,
        line=result.first_error_line,
        column=column,
    )


def rule_violation(
    dataset: Dataset,
    rule: ValueRule,
    key: str,
    broken: int,
    example: Sequence[Any] | None,
) -> BadFileError:
    """A ``BadFileError`` for a file with ``broken`` rows breaking ``rule``, quoting one.

    Snowflake keeps no line number with a loaded row, so the error names no line; the row it
    quotes is one of the breaking rows, not necessarily the first.
    """
    values = dict(zip(dataset.header, example or (), strict=False))
    value = values.get(rule.column)
    others = f" ({broken:,} rows break this rule; this is one of them)" if broken > 1 else ""
    row = ",".join("" if item is None else str(item) for item in values.values())
    reads = f"; the row reads: {shown(row)}" if example else ""
    return BadFileError(
        key,
        f"{rule.column} is {'empty' if value is None else value}, but must be "
        f"{rule.expectation}{others}{reads}",
        f"RAW only takes valid {dataset.name}: correct or drop the rows that break the rule. "
        + RELOAD_HINT,
        column=rule.column,
    )


# --- reading a header from S3 ----------------------------------------------------------------


def object_header(s3: Any, bucket: str, key: str) -> str:
    """The first line of an object, read with one ranged GET (gzip decompressed)."""
    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")["Body"]
    raw = body.read()
    if key.lower().endswith(".gz"):
        try:
            raw = zlib.decompressobj(wbits=31).decompress(raw, HEADER_BYTES)
        except zlib.error as error:
            raise BadFileError(
                key,
                f"cannot be read as gzip ({error})",
                "Re-export the file; name it .csv.gz only if it is gzip-compressed.",
            ) from error
    return raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")


# --- the resource ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyJob:
    """One COPY: a batch of new objects of one dataset, all stamped with ``loaded_at``."""

    dataset: Dataset
    objects: list[S3Object]
    loaded_at: datetime
    s3: Any
    bucket: str
    on_error: str = "abort"
    """``abort`` or ``skip_file``: the COPY's ``ON_ERROR``."""


@dataclass
class BatchOutcome:
    """What one COPY's transaction did with its files."""

    loaded: list[FileLoad] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rejected: list[tuple[S3Object, BadFileError]] = field(default_factory=list)


def _batches(items: Sequence[S3Object], size: int) -> Iterator[list[S3Object]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def check_object(dataset: Dataset, obj: S3Object, s3: Any, bucket: str) -> None:
    """Raise ``BadFileError`` for an empty object or a wrong header, before any COPY.

    ``SKIP_HEADER = 1`` would otherwise skip a wrong header silently.
    """
    check_not_empty(dataset, obj.key, obj.size)
    check_header(dataset, obj.key, object_header(s3, bucket, obj.key))


def rejected_file(obj: S3Object, error: BadFileError) -> RejectedFile:
    """The ``LoadReport.rejected`` entry of a bad file."""
    return RejectedFile(obj.key, obj.etag, str(error), error.line, error.column)


def reject(
    report: LoadReport,
    obj: S3Object,
    error: BadFileError,
    on_error: str,
    log: logging.Logger | Any,
) -> None:
    """Report a bad file; under ``abort`` also raise its error (it is recorded first)."""
    report.rejected.append(rejected_file(obj, error))
    if on_error == "abort":
        raise error
    log.warning(f"{report.dataset}: rejected (on_error=skip_file): {error}")


class SnowflakeWarehouse(Warehouse):
    """Snowflake: RAW loaded with ``COPY INTO`` from the landing stage, dbt through dbt-snowflake.

    Connections are made with dagster-snowflake's ``SnowflakeResource``; every session carries
    a ``QUERY_TAG`` naming the Dagster run and asset, so costs can be attributed in Snowflake's
    query history.
    """

    account: str = Field(description="Account identifier, e.g. myorg-myacct (SNOWFLAKE_ACCOUNT).")
    user: str = Field(description="The loader's user (SNOWFLAKE_USER).")
    password: str | None = Field(
        default=None, description="Password (SNOWFLAKE_PASSWORD); or use a key pair."
    )
    private_key_path: str | None = Field(
        default=None, description="PEM private key for key-pair auth (SNOWFLAKE_PRIVATE_KEY_PATH)."
    )
    private_key_passphrase: str | None = Field(
        default=None,
        description="Passphrase of the private key, if any (SNOWFLAKE_PRIVATE_KEY_PASSPHRASE).",
    )
    role: str = Field(default=DEFAULT_ROLE, description="Role of load sessions (SNOWFLAKE_ROLE).")
    warehouse: str = Field(
        default=DEFAULT_WAREHOUSE, description="Virtual warehouse (SNOWFLAKE_WAREHOUSE)."
    )
    database: str = Field(default=DEFAULT_DATABASE, description="Database (SNOWFLAKE_DATABASE).")
    host: str | None = Field(
        default=None, description="Host override for PrivateLink or an emulator (SNOWFLAKE_HOST)."
    )
    port: int | None = Field(default=None, description="Port override (SNOWFLAKE_PORT).")
    protocol: str | None = Field(
        default=None, description="https (default) or http for an emulator (SNOWFLAKE_PROTOCOL)."
    )
    stage: str = Field(
        default=DEFAULT_STAGE,
        description="The external stage on the landing bucket (MOVIELENS_SNOWFLAKE_STAGE).",
    )
    stage_key_prefix: str = Field(
        default="landing/",
        description=(
            "The part of every S3 key the stage URL covers, e.g. 'landing/' for a stage on "
            "s3://bucket/landing/ (MOVIELENS_SNOWFLAKE_STAGE_PREFIX, default MOVIELENS_S3_PREFIX)."
        ),
    )
    file_format: str = Field(
        default=DEFAULT_FILE_FORMAT, description="The named CSV file format COPY uses."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SnowflakeWarehouse:
        """Configure from the standard Snowflake variables; secrets stay ``dg.EnvVar``s.

        Secrets are resolved by Dagster when a run starts, so they never appear in the
        resource's configuration or in metadata.
        """
        env = os.environ if environ is None else environ
        missing = [name for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER") if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"MOVIELENS_TARGET=prod needs {' and '.join(missing)}; see .env.example."
            )
        if env.get("SNOWFLAKE_PASSWORD") and env.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
            raise ConfigurationError(
                "Set SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH, not both."
            )
        auth: dict[str, Any] = {}
        if env.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
            auth["private_key_path"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PATH")
            if env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
                auth["private_key_passphrase"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
        elif env.get("SNOWFLAKE_PASSWORD"):
            auth["password"] = dg.EnvVar("SNOWFLAKE_PASSWORD")
        else:
            raise ConfigurationError(
                "MOVIELENS_TARGET=prod needs SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH."
            )
        prefix = Settings.from_env(env).prefix
        stage_prefix = env.get("MOVIELENS_SNOWFLAKE_STAGE_PREFIX", f"{prefix}/" if prefix else "")
        return cls(
            account=dg.EnvVar("SNOWFLAKE_ACCOUNT"),
            user=dg.EnvVar("SNOWFLAKE_USER"),
            # The loader's own least-privilege role; SNOWFLAKE_ROLE is dbt's (TRANSFORM).
            role=env.get("MOVIELENS_SNOWFLAKE_LOADER_ROLE") or DEFAULT_ROLE,
            warehouse=env.get("SNOWFLAKE_WAREHOUSE") or DEFAULT_WAREHOUSE,
            database=env.get("SNOWFLAKE_DATABASE") or DEFAULT_DATABASE,
            host=env.get("SNOWFLAKE_HOST") or None,
            port=int(env["SNOWFLAKE_PORT"]) if env.get("SNOWFLAKE_PORT") else None,
            protocol=env.get("SNOWFLAKE_PROTOCOL") or None,
            stage=env.get("MOVIELENS_SNOWFLAKE_STAGE") or DEFAULT_STAGE,
            stage_key_prefix=stage_prefix.lstrip("/"),
            on_error_by_dataset=on_error_from_env(env),
            **auth,
        )

    @property
    def kind(self) -> str:
        """The asset kind of tables in this warehouse."""
        return "snowflake"

    def snowflake_resource(self, tag: str) -> SnowflakeResource:
        """dagster-snowflake's resource for one session tagged ``tag``.

        The tag is a session parameter sent at login, so it applies from the first statement
        and needs no SQL of its own.
        """
        extra: dict[str, Any] = {"session_parameters": {"QUERY_TAG": tag}}
        for name in ("host", "port", "protocol"):
            if getattr(self, name):
                extra[name] = getattr(self, name)
        return SnowflakeResource(
            account=self.account,
            user=self.user,
            password=self.password,
            private_key_path=self.private_key_path,
            private_key_password=self.private_key_passphrase,
            role=self.role,
            warehouse=self.warehouse,
            database=self.database,
            schema_=RAW_SCHEMA,
            paramstyle="qmark",
            additional_snowflake_connection_args=extra,
        )

    @contextmanager
    def session(self, tag: str) -> Iterator[Any]:
        """A cursor on a new tagged connection; the connection is closed afterwards."""
        with self.snowflake_resource(tag).get_connection() as connection:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def ensure_raw_tables(self) -> None:
        """Create the RAW tables, the ledger and the rejections where missing (as setup.sql)."""
        with self.session(query_tag(None, "raw", tool="dagster")) as cursor:
            for dataset in DATASETS.values():
                cursor.execute(raw_table_ddl(dataset))
            cursor.execute(LEDGER_DDL)
            cursor.execute(REJECTIONS_DDL)

    def ledger(self, cursor: Any, dataset: str) -> set[tuple[str, str]]:
        """The (key, ETag) pairs already loaded for a dataset."""
        cursor.execute(f'select "S3_KEY", "ETAG" from {LEDGER} where "DATASET" = ?', [dataset])
        return {(key, etag) for key, etag in cursor.fetchall()}

    def stage_paths(self, dataset: Dataset, objects: Sequence[S3Object]) -> tuple[str, list[str]]:
        """The folder of the dataset inside the stage and each object's name relative to it."""
        prefix = self.stage_key_prefix
        folder = f"{dataset.name}/"
        names = []
        for obj in objects:
            if not obj.key.startswith(prefix + folder):
                raise LoadError(
                    f"{obj.key} is outside the stage folder {prefix}{folder} that the "
                    f"{self.stage} stage maps; check MOVIELENS_SNOWFLAKE_STAGE_PREFIX."
                )
            names.append(obj.key.removeprefix(prefix + folder))
        return folder, names

    def load_dataset(
        self,
        dataset: str,
        objects: Sequence[S3Object],
        s3: Any,
        bucket: str,
        run_id: str,
        log: logging.Logger | Any,
    ) -> SnowflakeLoadReport:
        """COPY the dataset's new objects, at most 1,000 files per statement and transaction.

        A bad file raises ``BadFileError`` (``on_error=abort``; nothing of its batch loads) or
        is reported in ``LoadReport.rejected`` (``skip_file``); either way it is recorded in
        ``RAW.LOAD_REJECTIONS``, and batches committed before it stay loaded.
        """
        spec = DATASETS[dataset]
        on_error = self.on_error_for(dataset)
        report = SnowflakeLoadReport(dataset)
        with self.session(query_tag(run_id, f"raw/{spec.raw_table}")) as cursor:
            pending = new_objects(objects, self.ledger(cursor, dataset))
            report.skipped = [obj.key for obj in objects if obj not in pending]
            try:
                readable = []
                for obj in pending:
                    try:
                        check_object(spec, obj, s3, bucket)
                    except BadFileError as error:
                        reject(report, obj, error, on_error, log)
                        continue
                    readable.append(obj)
                for batch in _batches(readable, MAX_FILES_PER_COPY):
                    loaded_at = datetime.now(UTC).replace(tzinfo=None)
                    log.info(f"{dataset}: COPY of {len(batch)} file(s) into {raw_table_name(spec)}")
                    job = CopyJob(spec, batch, loaded_at, s3, bucket, on_error)
                    outcome = self._load_batch(cursor, job, report, run_id, log)
                    for obj, error in outcome.rejected:
                        reject(report, obj, error, on_error, log)
                    for item in outcome.loaded:
                        log.info(f"{dataset}: {item.key} loaded {item.rows:,} rows")
                    report.loaded.extend(outcome.loaded)
                    report.skipped.extend(outcome.skipped)
            finally:
                self._record_rejections(cursor, dataset, report.rejected, on_error, run_id, log)
            cursor.execute(f"select count(*) from {raw_table_name(spec)}")
            report.table_rows = cursor.fetchone()[0]
        return report

    def _load_batch(
        self,
        cursor: Any,
        job: CopyJob,
        report: SnowflakeLoadReport,
        run_id: str,
        log: logging.Logger | Any,
    ) -> BatchOutcome:
        """One batch in one transaction: COPY, value rules, ledger rows.

        Under ``abort`` a bad file rolls the transaction back and raises ``BadFileError``
        (recorded in ``report.rejected`` first). Under ``skip_file`` a file the COPY did not
        load is left out of the ledger; if rows of a loaded file break a value rule, the
        transaction is rolled back and the COPY runs again without the bad files, so their
        rows never commit and Snowflake's load metadata does not hold them (the same file can
        be landed again). Rejected files come back in ``BatchOutcome.rejected``.
        """
        rejected: list[tuple[S3Object, BadFileError]] = []
        while True:
            cursor.execute("begin")
            try:
                try:
                    results = self.run_copy(cursor, job)
                except ProgrammingError as error:
                    bad = copy_error(error, job.objects, job.dataset)
                    if isinstance(bad, BadFileError) and (obj := match_file(bad.key, job.objects)):
                        report.rejected.append(rejected_file(obj, bad))
                    raise bad from error
                outcome = self._classify(cursor, job, results, log)
                breakers = self._rule_violations(cursor, job, outcome)
                outcome.rejected.extend(breakers)
                if job.on_error == "abort" and outcome.rejected:
                    obj, bad = outcome.rejected[0]
                    report.rejected.append(rejected_file(obj, bad))
                    raise bad
                if breakers:
                    # Their rows are in this transaction: roll it back, COPY the rest again.
                    cursor.execute("rollback")
                    rejected.extend(outcome.rejected)
                    bad_keys = {obj.key for obj, _ in outcome.rejected}
                    job = replace(job, objects=[o for o in job.objects if o.key not in bad_keys])
                    if not job.objects:
                        return BatchOutcome(rejected=rejected)
                    continue
                if outcome.loaded:
                    cursor.executemany(
                        f"insert into {LEDGER} values (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (job.dataset.name, f.key, f.etag, f.size, f.rows, f.loaded_at, run_id)
                            for f in outcome.loaded
                        ],
                    )
                cursor.execute("commit")
            except BaseException:
                cursor.execute("rollback")
                raise
            report.copy_results.extend(results)
            outcome.rejected[:0] = rejected
            return outcome

    def run_copy(self, cursor: Any, job: CopyJob) -> list[CopyResult]:
        """Run the ``COPY INTO`` of one batch and return Snowflake's per-file results."""
        folder, names = self.stage_paths(job.dataset, job.objects)
        cursor.execute(
            copy_into_sql(
                job.dataset,
                self.stage,
                folder,
                names,
                job.loaded_at,
                key_prefix=self.stage_key_prefix,
                file_format=self.file_format,
                on_error=job.on_error,
            )
        )
        return copy_results(cursor)

    def _classify(
        self,
        cursor: Any,
        job: CopyJob,
        results: Sequence[CopyResult],
        log: logging.Logger | Any,
    ) -> BatchOutcome:
        """Sort a COPY's files into loaded, already loaded and rejected (not ``LOADED``)."""
        outcome = BatchOutcome()
        table = raw_table_name(job.dataset)
        ledger: set[tuple[str, str]] | None = None
        for result in results:
            obj = match_file(result.file, job.objects)
            if obj is None:
                raise LoadError(
                    f"COPY reported {result.file!r}, which is none of the files it was given; "
                    "check that the stage and MOVIELENS_SNOWFLAKE_STAGE_PREFIX match the bucket."
                )
            if result.status == "LOADED":
                rows = result.rows_loaded
                outcome.loaded.append(FileLoad(obj.key, obj.etag, obj.size, rows, job.loaded_at))
            elif result.status == "LOAD_SKIPPED":
                # Snowflake's load metadata knows this file. If a concurrent run recorded it
                # meanwhile, it is done; otherwise its ledger row was deleted: its rows are in
                # RAW already, so record it again.
                ledger = self.ledger(cursor, job.dataset.name) if ledger is None else ledger
                if (obj.key, obj.etag) in ledger:
                    outcome.skipped.append(obj.key)
                    continue
                cursor.execute(f'select count(*) from {table} where "_SOURCE_FILE" = ?', [obj.key])
                rows = cursor.fetchone()[0]
                log.warning(f"{obj.key}: already loaded by Snowflake ({rows} rows); recorded")
                outcome.loaded.append(FileLoad(obj.key, obj.etag, obj.size, rows, job.loaded_at))
            else:
                error = failed_file_error(result, obj, job.dataset, getattr(cursor, "sfqid", None))
                outcome.rejected.append((obj, error))
        if missing := unreported(results, job.objects):
            raise LoadError(
                f"COPY reported nothing about {', '.join(obj.key for obj in missing)}; nothing "
                "of this batch was recorded. Check that the files are still in the bucket and "
                "that the stage and MOVIELENS_SNOWFLAKE_STAGE_PREFIX match it."
            )
        return outcome

    def _rule_violations(
        self, cursor: Any, job: CopyJob, outcome: BatchOutcome
    ) -> list[tuple[S3Object, BadFileError]]:
        """The loaded files whose new rows break a value rule, taken out of ``outcome.loaded``.

        Only rows this COPY appended are checked (its ``_LOADED_AT`` and the keys it loaded);
        the caller rolls the transaction back when any file breaks a rule.
        """
        rules = VALUE_RULES.get(job.dataset.name)
        if not rules or not outcome.loaded:
            return []
        keys = sorted({item.key for item in outcome.loaded})
        cursor.execute(rule_breaks_sql(job.dataset, len(keys)), [job.loaded_at, *keys])
        breaks = {row[0]: row[1:] for row in cursor.fetchall()}
        violations: list[tuple[S3Object, BadFileError]] = []
        for key in sorted(breaks):
            rule, broken = next(
                (rule, int(count)) for rule, count in zip(rules, breaks[key], strict=True) if count
            )
            cursor.execute(rule_example_sql(job.dataset, rule), [job.loaded_at, key])
            error = rule_violation(job.dataset, rule, key, broken, cursor.fetchone())
            outcome.loaded[:] = [item for item in outcome.loaded if item.key != key]
            violations.append((next(obj for obj in job.objects if obj.key == key), error))
        return violations

    def _record_rejections(
        self,
        cursor: Any,
        dataset: str,
        rejected: Sequence[RejectedFile],
        on_error: str,
        run_id: str,
        log: logging.Logger | Any,
    ) -> None:
        """Replace the dataset's rows of ``RAW.LOAD_REJECTIONS`` with this load's rejections."""
        try:
            cursor.execute("begin")
            cursor.execute(f'delete from {REJECTIONS} where "DATASET" = ?', [dataset])
            if rejected:
                cursor.executemany(
                    f"insert into {REJECTIONS} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rejection_rows(dataset, rejected, on_error, run_id),
                )
            cursor.execute("commit")
        except SnowflakeError as error:
            with contextlib.suppress(SnowflakeError):
                cursor.execute("rollback")
            log.warning(f"{dataset}: rejected files not recorded in {REJECTIONS}: {error}")

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a query in a session tagged as an ad-hoc query; its column names and rows."""
        with self.session(query_tag(None, None, tool="query")) as cursor:
            cursor.execute(sql)
            rows = cursor.fetchall()
            return [column[0] for column in cursor.description], rows

    def dbt_env(self, run_id: str | None = None) -> dict[str, str]:
        """The query tag of dbt's queries (``DBT_QUERY_TAG``), with the run id if given; read
        per node at run time by ``movielens_dbt/macros/set_query_tag.sql``, never by the profile.

        Credentials are not passed on: dbt's profile reads the same ``SNOWFLAKE_*`` variables
        from the environment, with its own role (``TRANSFORM``) when ``SNOWFLAKE_ROLE`` is unset.
        """
        return {"DBT_QUERY_TAG": query_tag(run_id, None, tool="dbt")}
