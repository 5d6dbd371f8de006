"""End to end: `movielens run` materializes the whole graph on the embedded default.

Each run is the real command in a subprocess: it starts its own loopback S3 server (moto),
writes a real DuckDB file under a scratch MOVIELENS_HOME, runs real dbt through dagster-dbt and
records the run in a real Dagster instance. Expectations come from the CSV files, read with
Python's csv module.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.tools.runner import AssetLine, Summary, format_summary
from movielens_assets_tests.conftest import csv_rows

pytestmark = pytest.mark.e2e


def movielens(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env["MOVIELENS_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "movielens_assets.tools.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def query(home: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    summary_path = home / "summary.json"
    result = movielens(home, "run", "--summary-json", str(summary_path))
    assert result.returncode == 0, result.stdout + result.stderr
    return home, json.loads(summary_path.read_text()), result


def sample_file(home: Path, dataset: str) -> Path:
    return home / "sample" / "ml-latest-small" / DATASETS[dataset].grouplens_file


def test_every_raw_table_holds_every_csv_row(first_run):
    home, summary, _ = first_run
    rows = {asset["key"]: asset["rows"] for asset in summary["assets"]}
    for dataset in DATASETS:
        expected = len(csv_rows(sample_file(home, dataset)))
        assert expected > 0
        assert query(home, f"select count(*) from raw.raw_{dataset}") == [(expected,)]
        assert rows[f"raw/raw_{dataset}"] == expected
        assert rows[f"s3/{dataset}"] == expected


def test_every_asset_is_materialized_and_every_check_passed(first_run):
    _, summary, result = first_run
    assert summary["success"] is True
    assert {asset["status"] for asset in summary["assets"]} == {"materialized"}
    manifest = json.loads((Path("movielens_dbt") / "target" / "manifest.json").read_text())
    tests = [node for node in manifest["nodes"].values() if node["resource_type"] == "test"]
    # every dbt test, and per RAW asset: source freshness, no_rejected_files, rows_match_ledger
    assert summary["checks"]["passed"] == len(tests) + 3 * len(DATASETS)
    assert len(tests) > 20
    assert summary["checks"]["failed"] == 0
    assert set(summary["stages"]) == {"landing", "raw", "dbt"}
    assert all(seconds > 0 for seconds in summary["stages"].values())
    assert "Checks:" in result.stdout and "Top 10 movies" in result.stdout


def test_the_run_shows_progress_on_stderr_and_only_the_summary_on_stdout(first_run):
    _, summary, result = first_run
    prefix = "movielens run: "
    lines = [line[len(prefix) :] for line in result.stderr.splitlines() if line.startswith(prefix)]
    manifest = json.loads((Path("movielens_dbt") / "target" / "manifest.json").read_text())
    nodes = manifest["nodes"].values()
    tests = sum(1 for node in nodes if node["resource_type"] == "test")
    built = sum(
        1
        for node in nodes
        if node["resource_type"] in ("seed", "snapshot")
        or (node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral")
    )
    datasets = len(DATASETS)

    starts = [lines.index(f"{stage}: started") for stage in ("landing", "raw", "dbt")]
    assert starts == sorted(starts)
    loaded = [line for line in lines if line.startswith("raw: ") and "started" not in line]
    assert loaded[:-1] == [f"raw: {n}/{datasets} datasets loaded" for n in range(1, datasets + 1)]
    assert re.fullmatch(
        rf"raw: done in [\d.]+ s, {datasets}/{datasets} datasets loaded", loaded[-1]
    )
    dbt_done = rf"dbt: done in [\d.]+ s, {built}/{built} models, seeds and snapshots built"
    assert re.fullmatch(rf"{dbt_done}, {tests} checks", lines[-1])
    assert len([line for line in lines if line.startswith("dbt: ")]) == built + 2
    # stdout is the summary and nothing else
    assert "movielens run:" not in result.stdout
    assert result.stdout.startswith(f"Run {summary['run_id']}: SUCCESS\n")
    assets = [AssetLine(**asset) for asset in summary["assets"]]
    assert result.stdout == format_summary(Summary(**{**summary, "assets": assets})) + "\n"


def test_dim_movies_keeps_titles_intact_and_empty_genre_arrays(first_run):
    home, _, _ = first_run
    movies = csv_rows(sample_file(home, "movies"))
    expected = {int(movie_id): title.strip() for movie_id, title, _ in movies}
    loaded = dict(query(home, "select movie_id, movie_title from dev.dim_movies"))
    assert loaded == expected
    assert any("," in title for title in loaded.values())
    assert any('"' in title for title in loaded.values())
    no_genres = {int(movie_id) for movie_id, _, genres in movies if genres == "(no genres listed)"}
    assert no_genres
    arrays = dict(query(home, "select movie_id, genre_array from dev.dim_movies"))
    assert all(arrays[movie_id] == [] for movie_id in no_genres)
    comedy_drama = next(m for m in movies if m[2] == "Comedy|Drama")
    assert arrays[int(comedy_drama[0])] == ["Comedy", "Drama"]


def test_facts_and_users_match_the_csv_files(first_run):
    home, _, _ = first_run
    ratings = csv_rows(sample_file(home, "ratings"))
    tags = csv_rows(sample_file(home, "tags"))
    pairs = {(int(row[0]), int(row[1])) for row in ratings}
    assert query(home, "select count(*) from dev.fct_ratings") == [(len(pairs),)]
    users = {int(row[0]) for row in ratings} | {int(row[0]) for row in tags}
    assert query(home, "select count(*), count(distinct user_id) from dev.dim_users") == [
        (len(users), len(users))
    ]
    scores = csv_rows(sample_file(home, "genome_scores"))
    assert query(home, "select count(*) from dev.fct_genome_scores") == [(len(scores),)]


def test_the_movie_analysis_ranking_matches_an_independent_computation(first_run):
    home, summary, _ = first_run
    by_movie = defaultdict(list)
    for _, movie_id, rating, _ in csv_rows(sample_file(home, "ratings")):
        by_movie[int(movie_id)].append(float(rating))
    titles = {int(row[0]): row[1].strip() for row in csv_rows(sample_file(home, "movies"))}
    ranked = sorted(
        (
            (-round(statistics.fmean(values), 3), titles[movie_id], len(values))
            for movie_id, values in by_movie.items()
            if len(values) > 100
        )
    )
    expected = [(title, -negative, count) for negative, title, count in ranked]
    got = sorted(
        (
            (m["movie_title"], m["average_rating"], m["total_ratings"])
            for m in summary["top_movies"]
        ),
        key=lambda item: (-item[1], item[0]),
    )
    assert len(got) == 10
    cutoff = got[-1][1]
    assert got == [item for item in expected if item[1] >= cutoff][: len(got)]


def test_running_again_loads_nothing_and_duplicates_nothing(first_run):
    home, summary, _ = first_run
    before = {d: query(home, f"select count(*) from raw.raw_{d}") for d in DATASETS}
    ledger_before = query(home, "select s3_key, etag, run_id from raw.load_ledger order by 1")
    result = movielens(home, "run", "--summary-json", str(home / "second.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    second = json.loads((home / "second.json").read_text())
    assert second["run_id"] != summary["run_id"]
    assert {d: query(home, f"select count(*) from raw.raw_{d}") for d in DATASETS} == before
    assert (
        query(home, "select s3_key, etag, run_id from raw.load_ledger order by 1") == ledger_before
    )
    pairs = query(home, "select count(*), count(distinct (user_id, movie_id)) from dev.fct_ratings")
    assert pairs[0][0] == pairs[0][1]


def test_a_row_violating_a_dbt_test_fails_its_check_and_blocks_downstream(tmp_path):
    data = tmp_path / "data"
    sample = Path(__file__).resolve().parents[2] / "movielens_assets" / "sample_data"
    for dataset in ("movies", "ratings", "tags", "links"):
        (data / dataset).mkdir(parents=True)
        shutil.copyfile(
            sample / "ml-latest-small" / DATASETS[dataset].grouplens_file,
            data / dataset / DATASETS[dataset].grouplens_file,
        )
    (data / "ratings" / "late-batch.csv").write_text(
        # RAW refuses a rating off the star scale, so break a rule only dbt checks: movie
        # 999999 is in no movies file (user 611 is not in ratings.csv: nothing shadows the row)
        "userId,movieId,rating,timestamp\n611,999999,4.0,1537799250\n"
    )
    home = tmp_path / "home"
    result = movielens(home, "run", "--data", str(data), "--summary-json", str(tmp_path / "s.json"))
    assert result.returncode != 0
    summary = json.loads((tmp_path / "s.json").read_text())
    failed = summary["checks"]["failed_names"]
    assert any(
        name.startswith("facts/fct_ratings:relationships_fct_ratings_movie_id") for name in failed
    )
    assert "relationships_fct_ratings_movie_id" in result.stdout
    status = {asset["key"]: asset["status"] for asset in summary["assets"]}
    assert status["dimensions/dim_movies"] == "materialized"
    assert status["marts/mart_movie_ratings"] == "not materialized"
    assert query(home, "select count(*) from raw.raw_ratings where movieId = 999999") == [(1,)]
    # the failed check shows the offending row: one row, holding the unknown movie id
    check = check_metadata(home, summary["run_id"], "relationships_fct_ratings_movie_id")
    assert check["dagster_dbt/failed_row_count"].value == 1
    header, separator, *rows = check["failing_rows_sample"].value.splitlines()
    assert header.count("|") == 2 and separator == "|---|"  # the test selects one column
    assert [row.strip("| ").split(" | ") for row in rows] == [["999999"]]


def run_metadata(home: Path, run_id: str, *path: str) -> dict:
    """The metadata an asset's materialization in one run recorded in the Dagster instance."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            records = instance.fetch_materializations(dg.AssetKey(list(path)), limit=10).records
            (record,) = [record for record in records if record.run_id == run_id]
            return dict(record.asset_materialization.metadata)
    finally:
        del os.environ["DAGSTER_HOME"]


def check_metadata(home: Path, run_id: str, check_prefix: str) -> dict:
    """The metadata of the one check evaluation of a run whose check name starts so."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            (evaluation,) = [
                entry.dagster_event.event_specific_data
                for entry in entries
                if entry.dagster_event.event_specific_data.check_name.startswith(check_prefix)
            ]
            return dict(evaluation.metadata)
    finally:
        del os.environ["DAGSTER_HOME"]


def test_asset_pages_carry_columns_a_rating_chart_and_a_top_movies_preview(first_run):
    home, summary, _ = first_run
    ratings = csv_rows(sample_file(home, "ratings"))
    fct = run_metadata(home, summary["run_id"], "facts", "fct_ratings")
    columns = [column.name for column in fct["dagster/column_schema"].value.columns]
    assert columns == ["user_id", "movie_id", "rating", "rated_at", "_loaded_at"]
    chart = fct["rating_distribution"].value
    for value in sorted({row[2] for row in ratings}, key=float):
        count = sum(1 for row in ratings if row[2] == value)
        assert f"| {float(value):.1f} | {count:,} |" in chart
    assert fct["rows_processed"].value == len(ratings)

    by_movie = defaultdict(list)
    for _, movie_id, rating, _ in ratings:
        by_movie[int(movie_id)].append(float(rating))
    titles = {int(row[0]): row[1].strip() for row in csv_rows(sample_file(home, "movies"))}
    best = sorted(
        (-statistics.fmean(values), titles[movie_id])
        for movie_id, values in by_movie.items()
        if len(values) > 100
    )[:10]
    preview = run_metadata(home, summary["run_id"], "marts", "mart_movie_ratings")["top_movies"]
    titles_shown = [record.data["movie_title"] for record in preview.value.records]
    assert titles_shown == [title for _, title in best]
