"""Source freshness checks: dbt's windows from the manifest, one query, same verdicts as dbt.

The reference is dbt itself: ``dbt source freshness`` runs on the same real DuckDB file and its
``sources.json`` must give every table the status the checks give it.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from movielens_assets.defs.raw.source_freshness import (
    check_result,
    freshness_status,
    newest_loads_sql,
    source_freshness_config,
)
from movielens_assets.project import DBT_PROJECT_DIR, movielens_project
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse

DAY = {"warn_after": {"count": 24, "period": "hour"}, "error_after": {"count": 3, "period": "day"}}
# Hours since the newest load of each table; None: the table is empty.
AGES = {"movies": 1, "ratings": 30, "tags": 100, "links": 23.5, "genome_tags": None}


@pytest.mark.parametrize(
    ("hours", "expected"), [(0.5, "pass"), (23.9, "pass"), (24.1, "warn"), (71.9, "warn")]
)
def test_the_status_follows_the_warn_and_error_windows(hours, expected):
    assert freshness_status(timedelta(hours=hours), DAY) == expected
    assert freshness_status(timedelta(hours=72.1), DAY) == "error"


def test_without_windows_every_age_passes():
    assert freshness_status(timedelta(days=900), {}) == "pass"


def test_a_stale_table_warns_or_fails_and_reports_its_age():
    now = datetime(2026, 11, 26, 12, 0)
    config = {"freshness": DAY}
    warned = check_result("tags", config, now - timedelta(hours=30), now)
    failed = check_result("tags", config, now - timedelta(hours=150), now)
    assert (warned.passed, warned.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert warned.metadata["age_hours"].value == 30.0
    assert (failed.passed, failed.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert failed.asset_key == dg.AssetKey(["raw", "raw_tags"])


def test_an_empty_table_only_warns_and_says_it_is_empty():
    empty = check_result("genome_tags", {"freshness": DAY}, None, datetime(2026, 11, 26))
    assert (empty.passed, empty.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert empty.metadata["status"].value == "empty"


def test_the_checks_agree_with_dbt_source_freshness_on_a_real_warehouse(tmp_path):
    """Tables loaded 1 h to 100 h ago (one empty) in a real DuckDB file: the checks' verdicts
    equal those of ``dbt source freshness`` run by dbt itself on the same file."""
    path = tmp_path / "warehouse.duckdb"
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema raw")
        for dataset, hours in {**AGES, "genome_scores": 2}.items():
            connection.execute(f"create table raw.raw_{dataset} (_loaded_at timestamp)")
            if hours is not None:
                connection.execute(
                    f"insert into raw.raw_{dataset} values (?), (?)",
                    [now - timedelta(hours=hours), now - timedelta(hours=hours + 50)],
                )

    configs = source_freshness_config(json.loads(movielens_project.manifest_path.read_text()))
    newest = dict(DuckDBWarehouse(path=str(path)).query(newest_loads_sql(configs)))
    ours = {
        name: check_result(name.removeprefix("raw_"), configs[name], newest[name], now)
        for name in configs
    }
    assert newest["raw_genome_tags"] is None
    assert newest["raw_ratings"] == now - timedelta(hours=30)

    target = tmp_path / "target"
    env = {**os.environ, "MOVIELENS_DUCKDB_PATH": str(path), "MOVIELENS_TARGET": "local"}
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run(
        [str(dbt), "source", "freshness", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target),
         "--log-path", str(tmp_path / "logs")],
        env=env, check=False, capture_output=True,
    )  # fmt: skip
    results = json.loads((target / "sources.json").read_text())["results"]
    dbt_status = {result["unique_id"].rsplit(".", 1)[-1]: result["status"] for result in results}

    assert set(dbt_status) == set(ours)
    for name, result in ours.items():
        if newest[name] is None:
            assert result.metadata["status"].value == "empty"  # dbt: "error" for year 1
        else:
            assert result.metadata["status"].value == dbt_status[name], name
    assert {name: result.metadata["status"].value for name, result in ours.items()} == {
        "raw_movies": "pass",
        "raw_ratings": "warn",
        "raw_tags": "error",
        "raw_links": "pass",
        "raw_genome_tags": "empty",
        "raw_genome_scores": "pass",
    }
