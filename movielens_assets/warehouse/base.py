"""The warehouse interface the RAW assets load through; DuckDB and Snowflake implement it.

Semantics shared by both sides, modelled on Snowflake's ``COPY INTO``:

- RAW tables are append-only: the CSV columns plus ``_source_file`` and ``_loaded_at``;
- a ledger table (``raw.load_ledger``) records each loaded file by (S3 key, ETag), so a file
  is loaded at most once (like COPY's load metadata), and an overwritten key with new content
  is a new file;
- each file loads atomically: its rows and its ledger entry commit together or not at all;
- a file that breaks the CSV dialect, its dataset's types or a value rule (``VALUE_RULES``) is
  a bad file: nothing of it loads and the ledger does not record it, so it stays retryable.
  ``on_error`` decides what happens to the rest of the load, like ``COPY``'s ``ON_ERROR``:
  ``abort`` (the default) stops the load and fails it, ``skip_file`` reports the file in
  ``LoadReport.rejected`` and goes on with the next one;
- ``raw.load_rejections`` holds the files the last load of each dataset rejected.
"""

from __future__ import annotations

import contextlib
import logging
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from movielens_assets.lib.redact import redact_secrets
from movielens_assets.lib.s3 import S3Object
from movielens_assets.settings import normalize_on_error

REJECTIONS_TABLE = "load_rejections"
"""The RAW-schema table holding the files the last load of each dataset rejected."""


@dataclass(frozen=True)
class ValueRule:
    """A rule every value of one column must follow to be loaded into RAW.

    ``condition`` is SQL valid on DuckDB and Snowflake with ``{column}`` standing for the quoted
    column; a NULL value breaks the rule (see ``sql``).
    """

    column: str
    condition: str
    expectation: str
    """What a valid value is, in words, e.g. ``a star rating from 0.5 to 5.0 in steps of 0.5``."""

    def sql(self, quoted_column: str) -> str:
        """A boolean SQL expression, true exactly for values that follow the rule."""
        return f"coalesce({self.condition.format(column=quoted_column)}, false)"


VALUE_RULES: dict[str, tuple[ValueRule, ...]] = {
    "ratings": (
        ValueRule(
            "rating",
            "{column} between 0.5 and 5.0 and {column} * 2 = round({column} * 2)",
            "a star rating from 0.5 to 5.0 in steps of 0.5",
        ),
    ),
    "genome_scores": (
        ValueRule("relevance", "{column} between 0 and 1", "a relevance between 0 and 1"),
    ),
}
"""The value rules RAW enforces per dataset, beyond the column types.

Only rules about one value that define the dataset belong here: a rating outside the star scale
or a relevance outside [0, 1] is not MovieLens data, and would skew every average built on it.
Keys, uniqueness and references between datasets span files and loads, so dbt tests them in
staging; RAW keeps every row of a valid file as it was landed.
"""


class LoadError(Exception):
    """A file could not be loaded; nothing of it was committed.

    The message is redacted (``lib/redact.py``): it reaches run logs, asset metadata and the
    rejections table, and may quote a warehouse's or S3's own error text.
    """

    def __init__(self, message: str) -> None:
        super().__init__(redact_secrets(message))


class BadFileError(LoadError):
    """A landed file is not a valid CSV of its dataset.

    The message names the S3 key, and the line and column where known, says what is wrong and
    how to fix it.
    """

    def __init__(
        self,
        key: str,
        problem: str,
        hint: str,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        where = key
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {problem}. {hint}")
        self.key = key
        self.line = line
        self.column = column


class WarehouseBusyError(LoadError):
    """Another process holds the warehouse and did not release it in time."""


@dataclass(frozen=True)
class FileLoad:
    """One file that was loaded into a RAW table."""

    key: str
    etag: str
    size: int
    rows: int
    loaded_at: datetime


@dataclass(frozen=True)
class RejectedFile:
    """A bad file a load did not load: nothing of it is in RAW or in the ledger."""

    key: str
    etag: str
    error: str
    """The ``BadFileError`` message: where, what is wrong, how to fix it."""
    line: int | None = None
    column: str | None = None


def rejection_rows(
    dataset: str, rejected: Sequence[RejectedFile], on_error: str, run_id: str
) -> list[tuple[Any, ...]]:
    """The rows of ``load_rejections`` for one load's rejected files, in column order."""
    rejected_at = datetime.now(UTC).replace(tzinfo=None)
    return [
        (
            dataset,
            item.key,
            item.etag,
            item.error,
            item.line,
            item.column,
            on_error,
            run_id,
            rejected_at,
        )
        for item in rejected
    ]


@dataclass
class LoadReport:
    """What one dataset's load did."""

    dataset: str
    loaded: list[FileLoad] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Keys already in the ledger with the same ETag (or loaded by a concurrent run)."""
    table_rows: int = 0
    rejected: list[RejectedFile] = field(default_factory=list)
    """Bad files this load did not load (``on_error=skip_file``, or the one that aborted it)."""

    def file_results(self) -> list[dict[str, Any]]:
        """The warehouse's own per-file load results, where it reports any (Snowflake's COPY)."""
        return []

    @property
    def rows_loaded(self) -> int:
        """Rows appended by this load."""
        return sum(item.rows for item in self.loaded)


def new_objects(objects: Sequence[S3Object], ledger: set[tuple[str, str]]) -> list[S3Object]:
    """The objects of a listing whose (key, ETag) the ledger does not hold, in key order."""
    return [obj for obj in objects if (obj.key, obj.etag) not in ledger]


class Warehouse(dg.ConfigurableResource):
    """Where RAW tables live and dbt builds its models."""

    on_error: str = Field(
        default="abort",
        description=(
            "What a load does with a bad file, like Snowflake's ON_ERROR: 'abort' fails the "
            "load at the first bad file, 'skip_file' reports it and loads the others "
            "(MOVIELENS_ON_ERROR)."
        ),
    )
    on_error_by_dataset: dict[str, str] = Field(
        default_factory=dict,
        description="Per-dataset overrides of on_error (MOVIELENS_ON_ERROR_<DATASET>).",
    )

    def on_error_for(self, dataset: str) -> str:
        """``abort`` or ``skip_file`` for one dataset."""
        if dataset in self.on_error_by_dataset:
            return normalize_on_error(self.on_error_by_dataset[dataset], f"on_error[{dataset}]")
        return normalize_on_error(self.on_error)

    @property
    @abstractmethod
    def kind(self) -> str:
        """The engine's name, used as the assets' kind tag (``duckdb`` or ``snowflake``)."""

    @abstractmethod
    def ensure_raw_tables(self) -> None:
        """Create the RAW schema, its tables and the ledger where missing (never replace)."""

    @abstractmethod
    def load_dataset(
        self,
        dataset: str,
        objects: Sequence[S3Object],
        s3: Any,
        bucket: str,
        run_id: str,
        log: logging.Logger | Any,
    ) -> LoadReport:
        """Load every object not yet in the ledger into ``raw.raw_<dataset>``.

        ``s3`` is a boto3 client for ``bucket``; ``log`` receives per-file progress.
        """

    _reads: contextlib.ExitStack | None = PrivateAttr(default=None)
    _reader: Any = PrivateAttr(default=None)

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """The queries made inside share one read-only connection (DuckDB: the file opened
        once, not per query; Snowflake: one session), opened by the first of them and closed at
        the end. A query whose connection fails to open raises, like one outside; the next
        tries again. Inside another ``reading()``, the outer one's. Not for several threads."""
        if self._reads is not None:
            yield
            return
        self._reads = contextlib.ExitStack()
        try:
            yield
        finally:
            reads, self._reads, self._reader = self._reads, None, None
            reads.close()

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a read-only query and return its rows."""
        return self.query_with_columns(sql)[1]

    def query_with_columns(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a read-only query and return its column names and rows (on the connection of
        ``reading()`` when inside one, else on a connection of its own)."""
        if self._reads is None:
            with self.read_connection() as reader:
                return self.run_query(reader, sql)
        if self._reader is None:
            self._reader = self._reads.enter_context(self.read_connection())
        return self.run_query(self._reader, sql)

    @abstractmethod
    def read_connection(self) -> contextlib.AbstractContextManager[Any]:
        """A new read-only connection (or cursor) for ``run_query``, closed on exit."""

    @staticmethod
    def run_query(reader: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` on a ``read_connection()`` (a DB-API cursor, or DuckDB's connection, which
        acts as one); its column names and rows."""
        reader.execute(sql)
        rows = reader.fetchall()
        return [column[0] for column in reader.description], rows

    @abstractmethod
    def dbt_env(self, run_id: str | None = None) -> dict[str, str]:
        """Environment variables dbt's profile needs to reach this warehouse (``run_id`` tags
        dbt's queries where the warehouse can attribute them)."""
