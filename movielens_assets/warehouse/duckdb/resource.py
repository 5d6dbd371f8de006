"""The DuckDB warehouse resource: the file, a connection that waits while it is busy, dbt's env.

Only one process can open the file; others wait up to ``busy_timeout`` and then fail with
``WarehouseBusyError``. The load itself is ``loader.py``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import duckdb
from pydantic import Field

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.progress import DEFAULT_INTERVAL_SECONDS, DEFAULT_STEP_PERCENT
from movielens_assets.lib.s3 import S3Object
from movielens_assets.settings import Settings
from movielens_assets.warehouse.base import LoadReport, Warehouse, WarehouseBusyError
from movielens_assets.warehouse.duckdb.loader import FileLoader
from movielens_assets.warehouse.duckdb.sql import (
    LEDGER_DDL,
    RAW_SCHEMA,
    REJECTIONS_DDL,
    raw_table_ddl,
)

SCRATCH_DIR = ".load-scratch"
"""Beside the DuckDB file: where objects are downloaded before DuckDB reads them."""


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
    def from_settings(cls, settings: Settings) -> DuckDBWarehouse:
        """The warehouse at ``settings.duckdb_path`` with each dataset's ``on_error``."""
        return cls(path=str(settings.duckdb_path), on_error_by_dataset=dict(settings.on_error))

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

    def ensure_raw_tables(self) -> None:
        """Create the RAW schema, its tables, the ledger and the rejections if missing."""
        with self.connect() as connection:
            connection.execute(f"create schema if not exists {RAW_SCHEMA}")
            for dataset in DATASETS.values():
                connection.execute(raw_table_ddl(dataset))
            connection.execute(LEDGER_DDL)
            connection.execute(REJECTIONS_DDL)

    def load_dataset(
        self,
        dataset: str,
        objects: Sequence[S3Object],
        s3: Any,
        bucket: str,
        run_id: str,
        log: logging.Logger | Any,
    ) -> LoadReport:
        """Load the dataset's new objects, one transaction per file (``loader.py``).

        A bad file raises ``BadFileError`` (``on_error=abort``) or is reported in
        ``LoadReport.rejected`` (``skip_file``); either way it is recorded in
        ``raw.load_rejections``, and files loaded before it stay loaded.
        """
        spec = DATASETS[dataset]
        on_error = self.on_error_for(dataset)
        with self.connect() as connection:
            loader = FileLoader(
                connection, self.scratch, run_id, log, self.progress_interval, self.progress_step
            )
            return loader.load(spec, objects, s3, bucket, on_error)

    def read_connection(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A read-only connection to the file (it waits while another process writes)."""
        return self.connect(read_only=True)

    def dbt_env(self, run_id: str | None = None) -> dict[str, str]:
        """dbt's profile reads the file's path from ``MOVIELENS_DUCKDB_PATH``."""
        return {"MOVIELENS_DUCKDB_PATH": str(Path(self.path).resolve())}
