"""The statements a Snowflake load runs, rendered by pure functions.

The RAW tables, the ledger and the rejections (``create table if not exists``, never ``create or
replace``, which would discard Snowflake's load metadata), the ``COPY INTO`` of one batch, and
the value-rule queries on the rows a COPY appended. Unit-tested without a Snowflake account
(``movielens_assets_tests/unit/test_snowflake_sql.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from movielens_assets.datasets import METADATA_COLUMNS, Dataset
from movielens_assets.settings import ConfigurationError
from movielens_assets.warehouse.base import REJECTIONS_TABLE, VALUE_RULES, ValueRule
from movielens_assets.warehouse.snowflake.quoting import (
    object_name,
    quote_identifier,
    stage_location,
    string_literal,
    timestamp_literal,
)

RAW_SCHEMA = "RAW"
LEDGER = f"{RAW_SCHEMA}.LOAD_LEDGER"
REJECTIONS = f"{RAW_SCHEMA}.{REJECTIONS_TABLE.upper()}"
DEFAULT_STAGE = f"{RAW_SCHEMA}.MOVIELENS_LANDING"
DEFAULT_FILE_FORMAT = f"{RAW_SCHEMA}.MOVIELENS_CSV"
MAX_FILES_PER_COPY = 1000
"""Snowflake accepts at most 1,000 names in ``FILES = (...)``."""

ON_ERROR = {"abort": "ABORT_STATEMENT", "skip_file": "SKIP_FILE"}
"""The project's ``on_error`` values and the Snowflake ``ON_ERROR`` option each renders as."""


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
