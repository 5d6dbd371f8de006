"""The statements a DuckDB load runs: the RAW tables, the strict ``read_csv``, the value rules."""

from __future__ import annotations

from collections.abc import Sequence

from movielens_assets.datasets import LEDGER_TABLE, METADATA_COLUMNS, Dataset
from movielens_assets.warehouse.base import REJECTIONS_TABLE, ValueRule

RAW_SCHEMA = "raw"
MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line a file may have: 16 MiB, Snowflake's default VARCHAR size, so both
warehouses load the same files. A longer line is a bad file (usually a quote never closed)."""


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
