"""dbt's own unit tests of the two macros every fact is built on, run by real dbt on DuckDB.

``loaded_since_last_run`` (the load-time watermark) and ``latest_row_per_key`` (the dedupe) are
tested through ``fct_ratings`` with fixed inputs (``models/facts/_facts__models.yml``,
``unit_tests:``). Unit tests are a development-time check: the Dagster dbt step excludes them,
this test runs them, and shows that each one fails when its macro's rule is broken.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from movielens_assets.project import DBT_PROJECT_DIR
from movielens_assets.warehouse.duckdb import DuckDBWarehouse

DBT = Path(sys.executable).parent / "dbt"
WATERMARK_TEST = "fct_ratings_takes_only_rows_loaded_after_the_watermark"
LATEST_TEST = "fct_ratings_keeps_the_latest_delivery_of_each_pair"


def dbt(project: Path, home: Path, *args: str) -> dict[str, str]:
    """Run dbt on ``project`` against ``home``'s DuckDB file; the status of each node run."""
    env = {**os.environ, "MOVIELENS_DUCKDB_PATH": str(home / "warehouse.duckdb")}
    env.pop("DBT_TARGET_PATH", None)
    target = home / "target"
    subprocess.run(
        [str(DBT), *args, "--project-dir", str(project), "--profiles-dir", str(project),
         "--target-path", str(target), "--log-path", str(home / "logs")],
        env=env, check=False, capture_output=True, text=True,
    )  # fmt: skip
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {result["unique_id"].rsplit(".", 1)[-1]: result["status"] for result in results}


@pytest.fixture
def empty_warehouse(tmp_path: Path) -> Path:
    """A DuckDB file with the RAW tables (no rows): what dbt's unit tests need to exist."""
    home = tmp_path / "home"
    DuckDBWarehouse(path=str(home / "warehouse.duckdb")).ensure_raw_tables()
    return home


def build_empty_and_unit_test(project: Path, home: Path) -> dict[str, str]:
    """``dbt build --empty`` (every relation, no rows), then only the unit tests."""
    built = dbt(project, home, "build", "--empty", "--exclude-resource-type", "unit_test")
    assert built and set(built.values()) <= {"success", "pass"}, built
    return dbt(project, home, "test", "--select", "test_type:unit")


def test_the_fact_macros_unit_tests_pass(empty_warehouse):
    assert build_empty_and_unit_test(DBT_PROJECT_DIR, empty_warehouse) == {
        WATERMARK_TEST: "pass",
        LATEST_TEST: "pass",
    }


@pytest.mark.parametrize(
    ("macro", "rule", "broken", "failing"),
    [
        ("loaded_since_last_run.sql", "where _loaded_at >", "where _loaded_at >=", WATERMARK_TEST),
        ("latest_row_per_key.sql", "_source_file desc", "_source_file asc", LATEST_TEST),
    ],
)
def test_each_unit_test_fails_when_its_macros_rule_is_broken(
    empty_warehouse, tmp_path, macro, rule, broken, failing
):
    project = tmp_path / "movielens_dbt"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    path = project / "macros" / macro
    assert rule in path.read_text()
    path.write_text(path.read_text().replace(rule, broken))

    statuses = build_empty_and_unit_test(project, empty_warehouse)

    assert statuses[failing] == "fail"
    assert {name for name, status in statuses.items() if status != "pass"} == {failing}
