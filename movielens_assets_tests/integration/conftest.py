"""Fixtures shared by the integration tests."""

import logging
from pathlib import Path

import dagster as dg
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.lib import s3 as s3lib
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse
from movielens_assets_tests.conftest import SAMPLE

log = logging.getLogger(__name__)


@pytest.fixture
def home(landing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A MOVIELENS_HOME whose DuckDB file holds RAW, loaded from the bundled sample."""
    home = tmp_path / "home"
    monkeypatch.setenv("MOVIELENS_HOME", str(home))
    monkeypatch.setenv("DBT_TARGET_PATH", str(home / "dbt-target"))
    # the dbt step sets these for dbt; restore them after the test
    monkeypatch.setenv("MOVIELENS_DUCKDB_PATH", str(home / "warehouse.duckdb"))
    monkeypatch.setenv("MOVIELENS_TARGET", "local")
    client = landing.get_client()
    for dataset in DATASETS:
        path = SAMPLE / DATASETS[dataset].grouplens_file
        if path.exists():
            key = landing.dataset_prefix(dataset) + path.name
            s3lib.upload(client, path, landing.bucket, key)
    warehouse = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    with dg.build_resources({"warehouse": warehouse}) as resources:
        resources.warehouse.ensure_raw_tables()
        for dataset in DATASETS:
            objects = landing.list_dataset(dataset, client)
            resources.warehouse.load_dataset(
                dataset, objects, client, landing.bucket, "test-raw", log
            )
    return home
