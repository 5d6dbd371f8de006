"""The warehouse interface the RAW assets load through; DuckDB and Snowflake implement it.

Semantics shared by both sides, modelled on Snowflake's ``COPY INTO``:

- RAW tables are append-only: the CSV columns plus ``_source_file`` and ``_loaded_at``;
- a ledger table (``raw.load_ledger``) records each loaded file by (S3 key, ETag), so a file
  is loaded at most once (like COPY's load metadata), and an overwritten key with new content
  is a new file;
- each file loads atomically: its rows and its ledger entry commit together or not at all.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg

from movielens_assets.lib.s3 import S3Object


class LoadError(Exception):
    """A file could not be loaded; nothing of it was committed."""


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


@dataclass
class LoadReport:
    """What one dataset's load did."""

    dataset: str
    loaded: list[FileLoad] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Keys already in the ledger with the same ETag."""
    table_rows: int = 0

    @property
    def rows_loaded(self) -> int:
        """Rows appended by this load."""
        return sum(item.rows for item in self.loaded)


def new_objects(objects: Sequence[S3Object], ledger: set[tuple[str, str]]) -> list[S3Object]:
    """The objects of a listing whose (key, ETag) the ledger does not hold, in key order."""
    return [obj for obj in objects if (obj.key, obj.etag) not in ledger]


class Warehouse(dg.ConfigurableResource):
    """Where RAW tables live and dbt builds its models."""

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

    @abstractmethod
    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a read-only query and return its rows."""

    def release_dbt_adapter(self, adapter: Any) -> None:
        """Let go of whatever dbt's in-process adapter still holds once a dbt step is done."""

    @abstractmethod
    def dbt_env(self) -> dict[str, str]:
        """Environment variables dbt's profile needs to reach this warehouse."""
