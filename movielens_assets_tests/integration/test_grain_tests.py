"""The staging grain tests (`unique_combination_of_columns` with `narrow_by`), run by real dbt on
a real DuckDB file.

The grain of src_ratings and src_genome_scores is a pair per load of a file: its S3 key and its
load time. The test groups by the pair and the load time first and by the key only where
those repeat. These rows check that the narrowing finds the same failures as grouping by all
four columns: a file listing a pair twice fails, and two files of one load time (one Snowflake
COPY stamps all its files alike) listing the same pair once each pass. The DuckDB loader gives
every file its own load time, so the rows go into RAW by SQL, not through the loader. The
expected failures are counted in Python.
"""

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from movielens_assets.project import DBT_PROJECT_DIR
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse
from movielens_assets_tests.integration.test_dbt_unit_tests import dbt

pytestmark = pytest.mark.timeout(300)

ONE_LOAD = datetime(2026, 3, 1, 12, 0, 0)
LATER = datetime(2026, 3, 2, 12, 0, 0)
# (first id, second id, S3 key, load time): the pair (1, 10) twice in a.csv's one load; the pair
# (2, 10) once in each of two files of one load; b.csv loaded twice (two load times).
DELIVERIES = [
    (1, 10, "landing/x/a-2026-03-01.csv", ONE_LOAD),
    (1, 10, "landing/x/a-2026-03-01.csv", ONE_LOAD),
    (2, 10, "landing/x/a-2026-03-01.csv", ONE_LOAD),
    (2, 10, "landing/x/b-2026-03-01.csv", ONE_LOAD),
    (3, 11, "landing/x/b-2026-03-01.csv", ONE_LOAD),
    (3, 11, "landing/x/b-2026-03-01.csv", LATER),
]
GRAIN_TESTS = {
    "ratings": "unique_combination_of_columns_src_ratings_user_id__movie_id___source_file"
    "___loaded_at",
    "genome_scores": "unique_combination_of_columns_src_genome_scores_movie_id__tag_id"
    "___source_file___loaded_at",
}
RAW_ROW = {
    "ratings": "insert into raw.raw_ratings values (?, ?, 3.5, 1000000000, ?, ?)",
    "genome_scores": "insert into raw.raw_genome_scores values (?, ?, 0.5, ?, ?)",
}


@pytest.mark.parametrize("dataset", sorted(GRAIN_TESTS))
def test_the_grain_test_fails_a_pair_repeated_in_one_file_load_only(tmp_path: Path, dataset):
    home = tmp_path / "home"
    DuckDBWarehouse(path=str(home / "warehouse.duckdb")).ensure_raw_tables()
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
        connection.executemany(RAW_ROW[dataset], [list(row) for row in DELIVERIES])
    repeated = [row for row, seen in Counter(DELIVERIES).items() if seen > 1]

    dbt(DBT_PROJECT_DIR, home, "build", "--select", f"src_{dataset}")

    status, failures = result(home, GRAIN_TESTS[dataset])
    assert status == "fail"
    assert failures == len(repeated) == 1


def result(home: Path, test: str) -> tuple[str, int]:
    """The status of ``test`` and the failing rows dbt counted (``run_results.json``; a data
    test's unique id is ``test.<project>.<name>.<hash>``)."""
    results = json.loads((home / "target" / "run_results.json").read_text())["results"]
    (found,) = [r for r in results if r["unique_id"].split(".")[2] == test]
    return found["status"], found["failures"]
