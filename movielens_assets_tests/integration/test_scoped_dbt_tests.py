"""Primary-key tests scoped to the new rows on the sensor's runs, whole tables otherwise.

Real parts: RAW loaded from the bundled sample through the loopback S3 server into a real
DuckDB file (the ``home`` fixture of ``test_dbt_step.py``), real dbt started by dagster-dbt,
real Dagster runs. The scope's guarantee is checked by breaking what it relies on: a fact
table whose merge appends (a copy of the project) must still fail its uniqueness check on a
scoped run; an old duplicate, which a scoped run does not read, fails the whole-table run.
"""

import csv
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_dbt import DbtProject

from movielens_assets.defs.dbt.assets import build_dbt_assets
from movielens_assets.defs.dbt.test_scope import NEW_ROWS, TESTS_TAG
from movielens_assets.lib import s3 as s3lib
from movielens_assets.project import DBT_PROJECT_DIR
from movielens_assets.resources import build_resources
from movielens_assets.settings import Settings
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.integration.test_dbt_step import BIN

pytestmark = pytest.mark.timeout(600)

FCT_RATINGS = dg.AssetKey(["facts", "fct_ratings"])
UNIQUE = "unique_combination_of_columns_fct_ratings_user_id__movie_id"
SCOPED_RUN = {TESTS_TAG: NEW_ROWS}


def build(
    project: DbtProject | None, tags: dict[str, str], selection=None
) -> dg.ExecuteInProcessResult:
    """One run of the dbt assets (all, or ``selection``) with ``tags``."""
    settings = Settings.from_env()
    resources = build_resources(settings)
    assets = build_dbt_assets(settings, project) if project else build_dbt_assets(settings)
    return dg.materialize(
        [assets],
        selection=selection,
        tags=tags,
        resources={"dbt": resources["dbt"], "warehouse": resources["warehouse"]},
        raise_on_error=False,
    )


def check_passed(result: dg.ExecuteInProcessResult, name: str) -> bool:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation.passed


def land_and_load_ratings(landing, home: Path, rows: list[list[str]]) -> None:
    """A new ratings file in S3, loaded into RAW by the project's loader."""
    path = home / "ratings-late.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        writer.writerows(rows)
    client = landing.get_client()
    s3lib.upload(client, path, landing.bucket, landing.dataset_prefix("ratings") + path.name)
    warehouse = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    with dg.build_resources({"warehouse": warehouse}) as resources:
        objects = [o for o in landing.list_dataset("ratings", client) if o.key.endswith(path.name)]
        report = resources.warehouse.load_dataset(
            "ratings", objects, client, landing.bucket, "test-late", dg.get_dagster_logger()
        )
    assert [item.rows for item in report.loaded] == [len(rows)]


def re_rating_of_the_first_sample_pair() -> list[str]:
    user, movie, rating, timestamp = csv_rows(SAMPLE / "ratings.csv")[0]
    return [user, movie, "0.5" if rating != "0.5" else "1.0", str(int(timestamp) + 1)]


def pairs_and_rows(home: Path) -> tuple[int, int]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(
            "select count(distinct (user_id, movie_id)), count(*) from dev.fct_ratings"
        ).fetchone()


def test_a_scoped_run_leaves_old_rows_to_the_whole_table_runs(home):
    assert build(None, {}).success
    # an old duplicate: a copy of a row with its old load time, as no merge can make one
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
        connection.execute(
            "insert into dev.fct_ratings select * from dev.fct_ratings "
            "order by user_id, movie_id limit 1"
        )

    scoped = build(None, SCOPED_RUN, selection=[FCT_RATINGS])
    whole = build(None, {}, selection=[FCT_RATINGS])

    assert check_passed(scoped, UNIQUE)  # rows loaded since the last run: none
    assert not check_passed(whole, UNIQUE)


def test_a_scoped_run_merges_a_re_rating_and_passes(home, landing):
    assert build(None, {}).success
    pairs_before, _ = pairs_and_rows(home)
    land_and_load_ratings(landing, home, [re_rating_of_the_first_sample_pair()])

    scoped = build(None, SCOPED_RUN, selection=[FCT_RATINGS])

    assert scoped.success and check_passed(scoped, UNIQUE)
    assert pairs_and_rows(home) == (pairs_before, pairs_before)


def project_whose_merge_appends(tmp_path: Path, warehouse: Path) -> DbtProject:
    """A copy of the dbt project whose fct_ratings appends new rows instead of replacing the
    rows of their keys."""
    copy = tmp_path / "movielens_dbt"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    model = copy / "models" / "facts" / "fct_ratings.sql"
    text = model.read_text()
    assert "incremental_strategy='delete+insert'" in text
    model.write_text(
        text.replace("incremental_strategy='delete+insert'", "incremental_strategy='append'")
    )
    subprocess.run(
        [str(BIN / "dbt"), "parse", "--project-dir", str(copy), "--profiles-dir", str(copy)],
        env={"PATH": str(BIN), "MOVIELENS_DUCKDB_PATH": str(warehouse), "DO_NOT_TRACK": "1"},
        cwd=copy,
        check=True,
        capture_output=True,
        timeout=180,
    )
    return DbtProject(project_dir=copy, profiles_dir=copy)


def test_a_merge_that_appends_a_re_rating_fails_the_scoped_uniqueness_check(
    home, landing, tmp_path
):
    broken = project_whose_merge_appends(tmp_path, home / "warehouse.duckdb")
    assert build(broken, {}).success
    land_and_load_ratings(landing, home, [re_rating_of_the_first_sample_pair()])

    scoped = build(broken, SCOPED_RUN, selection=[FCT_RATINGS])

    pairs, rows = pairs_and_rows(home)
    assert rows == pairs + 1  # the re-rating was appended: one key twice
    assert not check_passed(scoped, UNIQUE)


RELATIONSHIP = "relationships_fct_ratings_movie_id__movie_id__ref_dim_movies_"
ACCEPTED = (
    "accepted_values_fct_ratings_rating__False__0_5__1_0__1_5__2_0__2_5__3_0__3_5__4_0__4_5__5_0"
)


def test_a_scoped_run_fails_new_rows_of_an_unknown_movie_or_a_wrong_rating(home, landing):
    """The scoped relationships and accepted-values checks read the new rows: a rating of a
    movie no movies file lists, and a re-rating to 7 stars, each fail them. (The loader refuses
    a 7-star rating; it is written into RAW as a faulty loader would, with a new load time.)"""
    assert build(None, {}).success
    user, movie, _, timestamp = re_rating_of_the_first_sample_pair()
    unknown = max(int(row[0]) for row in csv_rows(SAMPLE / "movies.csv")) + 1
    land_and_load_ratings(landing, home, [[user, str(unknown), "4.0", timestamp]])
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
        connection.execute(
            "insert into raw.raw_ratings "
            "select ?, ?, 7.0, ?, 'faulty-loader.csv', now()::timestamp",
            [int(user), int(movie), int(timestamp)],
        )

    scoped = build(None, SCOPED_RUN, selection=[FCT_RATINGS])

    assert not check_passed(scoped, RELATIONSHIP)
    assert not check_passed(scoped, ACCEPTED)
    assert check_passed(scoped, UNIQUE)


def test_scoped_relationships_and_values_leave_old_rows_to_the_whole_table_runs(home):
    """Rows no merge touched since the last run are not read by a scoped run; a whole-table run
    still finds an old rating whose movie is gone and an old wrong value."""
    assert build(None, {}).success
    with duckdb.connect(str(home / "warehouse.duckdb")) as connection:
        [(user, movie)] = connection.execute(
            "select user_id, movie_id from dev.fct_ratings order by user_id, movie_id limit 1"
        ).fetchall()
        connection.execute("delete from dev.dim_movies where movie_id = ?", [movie])
        connection.execute(
            "update dev.fct_ratings set rating = 7.0 where user_id = ? and movie_id = ?",
            [user, movie],
        )

    scoped = build(None, SCOPED_RUN, selection=[FCT_RATINGS])
    whole = build(None, {}, selection=[FCT_RATINGS])

    assert check_passed(scoped, RELATIONSHIP) and check_passed(scoped, ACCEPTED)
    assert not check_passed(whole, RELATIONSHIP) and not check_passed(whole, ACCEPTED)
