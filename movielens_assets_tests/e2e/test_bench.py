"""``movielens bench`` end to end at a tiny scale: what it builds and reports, never its timings.

One benchmark of 20,000 ratings (the quarter-size runs skipped, to keep the test short) runs
every phase for real: the bare-DuckDB baseline, plain dbt, the pipeline against a loopback S3
server and the sensor-triggered incremental run. The expectations come from the CSV files, read
with Python's csv module, and from the DuckDB files each phase left behind.
"""

import csv
import json
from pathlib import Path

import duckdb
import pytest

from movielens_assets.tools.bench import TABLE_ROWS, assess, format_table, run_bench

pytestmark = pytest.mark.e2e

TINY = 20_000
PAIRS = 2
"""Baseline-then-pipeline pairs: two, the fewest that choose between pairs."""
MODELS_EVERY_PHASE_BUILDS = {
    "dev.dim_movies",
    "dev.dim_users",
    "dev.dim_genome_tags",
    "dev.fct_ratings",
    "dev.fct_genome_scores",
    "dev.mart_movie_ratings",
    "dev.ep_movie_with_tags",
    "snapshots.snap_tags",
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("bench")
    json_path = work / "bench.json"
    returned = run_bench(
        ratings=TINY,
        json_path=json_path,
        work_dir=work / "work",
        code_location_repeats=1,
        quarter=False,
        pairs=PAIRS,
    )
    written = json.loads(json_path.read_text())
    assert written["phases"].keys() == returned["phases"].keys()
    return written


def latest_ratings(*paths: Path) -> dict[tuple[str, str], str]:
    """Each (user, movie) pair's rating in the last of ``paths`` that has it (landing order)."""
    ratings: dict[tuple[str, str], str] = {}
    for path in paths:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            assert next(reader) == ["userId", "movieId", "rating", "timestamp"]
            for user, movie, rating, _ in reader:
                ratings[(user, movie)] = rating
    return ratings


def query(database: str, sql: str) -> list[tuple]:
    with duckdb.connect(database, read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_baseline_and_pipeline_build_one_fact_row_per_distinct_csv_pair(bench):
    ratings_csv = Path(bench["work_dir"]) / "data" / "full" / "ratings.csv"
    pairs = len(latest_ratings(ratings_csv))

    assert pairs == TINY
    assert bench["counts"]["baseline"]["dev.fct_ratings"] == pairs
    assert bench["counts"]["plain_dbt"]["dev.fct_ratings"] == pairs
    assert bench["phases"]["pipeline"]["counts"]["dev.fct_ratings"] == pairs


def test_every_table_has_the_same_rows_in_the_baseline_plain_dbt_and_the_pipeline(bench):
    baseline = bench["counts"]["baseline"]
    plain_dbt = bench["counts"]["plain_dbt"]
    pipeline = bench["phases"]["pipeline"]["counts"]
    modelled = {name for name in pipeline if not name.startswith("raw.")}

    assert modelled >= MODELS_EVERY_PHASE_BUILDS
    assert {name: pipeline[name] for name in modelled} == {
        name: baseline[name] for name in modelled
    }
    assert {name: plain_dbt[name] for name in modelled} == {
        name: baseline[name] for name in modelled
    }
    for dataset in ("movies", "ratings", "tags", "links", "genome_tags", "genome_scores"):
        table = f"raw.raw_{dataset}"
        assert pipeline[table] == baseline[table] == plain_dbt[table] > 0


def test_the_baseline_runs_every_dbt_test_and_fails_exactly_those_dbt_fails(bench):
    manifest = json.loads(
        (Path(bench["work_dir"]) / "plain-dbt" / "target" / "manifest.json").read_text()
    )
    dbt_tests = {
        node["name"] for node in manifest["nodes"].values() if node["resource_type"] == "test"
    }
    baseline_tests = {
        name
        for (name,) in query(
            bench["phases"]["baseline"]["warehouse"], "select test_name from bench.test_results"
        )
    }

    assert baseline_tests == dbt_tests
    assert bench["phases"]["baseline"]["tests"] == len(dbt_tests)
    failed = set(bench["phases"]["baseline"]["failed_tests"])
    assert set(bench["phases"]["plain_dbt"]["failed_tests"]) == failed
    assert set(bench["phases"]["pipeline"]["failed_tests"]) == failed


def test_the_incremental_run_adds_exactly_the_new_pairs_and_applies_the_re_ratings(bench):
    work = Path(bench["work_dir"])
    base_file = work / "data" / "full" / "ratings.csv"
    increment_file = Path(bench["increments"]["full"])
    before = latest_ratings(base_file)
    increment = latest_ratings(increment_file)
    new_pairs = increment.keys() - before.keys()
    rerated = increment.keys() & before.keys()
    incremental = bench["phases"]["incremental"]

    assert len(new_pairs) == incremental["new_pairs"] == TINY // 100
    assert len(rerated) == incremental["rerated"] > 0
    assert all(increment[pair] != before[pair] for pair in rerated)
    assert incremental["counts"]["raw.raw_ratings"] == TINY + len(increment)
    assert incremental["counts"]["dev.fct_ratings"] == len(before | increment)
    assert incremental["counts"]["dev.fct_ratings"] - TINY == len(new_pairs)
    current = {
        (str(user), str(movie)): rating
        for user, movie, rating in query(
            bench["phases"]["pipeline"]["warehouse"],
            "select user_id, movie_id, rating from dev.fct_ratings",
        )
    }
    assert {pair: current[pair] for pair in rerated} == {
        pair: float(increment[pair]) for pair in rerated
    }
    assert "raw/raw_ratings" in incremental["selection"]
    assert "facts/fct_ratings" in incremental["selection"]


def test_the_json_has_every_phase_every_ratio_and_every_target(bench):
    for name in ("baseline", "plain_dbt", "pipeline", "incremental", "code_location"):
        phase = bench["phases"][name]
        assert phase["wall_s"] > 0
        assert phase["peak_rss_mib"] > 0
    for name in ("baseline", "plain_dbt", "pipeline"):
        assert bench["phases"][name]["rows"] == TINY
    assert {"landing_files", "raw_tables", "movielens_dbt_models"} <= set(
        bench["phases"]["pipeline"]["steps"]
    )
    assert {"raw_tables", "movielens_dbt_models"} <= set(bench["phases"]["incremental"]["steps"])
    assert bench["s3_server_peak_rss_mib"] > 0
    assert bench["dbt_server_peak_rss_mib"] > 0
    assert set(bench["ratios"]) == {
        "pipeline_over_baseline",
        "plain_dbt_over_baseline",
        "incremental_over_pipeline",
        "incremental_quarter_table_over_full_table",
        "incremental_quarter_file_over_full_file",
        "pipeline_quarter_over_pipeline",
    }
    for name in ("pipeline_over_baseline", "plain_dbt_over_baseline", "incremental_over_pipeline"):
        assert bench["ratios"][name] > 0
    assert set(bench["targets"]) == {
        "pipeline_over_baseline",
        "incremental_over_pipeline",
        "peak_rss_mib",
        "code_location_s",
    }
    assert all(isinstance(target["met"], bool) for target in bench["targets"].values())
    assert bench["machine"]["cores"] >= 1


def test_the_reported_baseline_and_pipeline_are_the_pair_with_the_median_ratio(bench):
    pairs = bench["pairs"]
    assert len(pairs) == PAIRS
    for pair in pairs:
        assert pair["ratio"] == pytest.approx(pair["pipeline_s"] / pair["baseline_s"], abs=1e-3)
    lower_middle = sorted(pairs, key=lambda pair: pair["ratio"])[(PAIRS - 1) // 2]
    phases = bench["phases"]
    assert (phases["baseline"]["wall_s"], phases["pipeline"]["wall_s"]) == (
        lower_middle["baseline_s"],
        lower_middle["pipeline_s"],
    )
    assert bench["ratios"]["pipeline_over_baseline"] == lower_middle["ratio"]
    logs = Path(bench["work_dir"]) / "logs"
    assert {path.name for path in logs.glob("pipeline-full*.log")} == {
        "pipeline-full.log",
        *(f"pipeline-full-{number}.log" for number in range(2, PAIRS + 1)),
    }


def test_the_table_names_each_phase_the_ratios_and_the_machine(bench):
    table = format_table(bench)

    for name, label in TABLE_ROWS:
        assert (label in table) == (name in bench["phases"])
    assert "pipeline over baseline" in table
    assert "incremental over pipeline" in table
    assert f"{bench['machine']['cores']} cores" in table
    assert "raw + dbt" in table
    assert f"the pair with the median ratio of {PAIRS}" in table


def test_the_quarter_ratios_compare_the_same_file_across_tables_and_files_on_one_table():
    phases = {
        name: {"wall_s": wall, "peak_rss_mib": 100.0}
        for name, wall in {
            "baseline": 10.0,
            "plain_dbt": 15.0,
            "pipeline": 12.0,
            "pipeline_quarter": 3.0,
            "incremental": 1.2,
            "incremental_quarter_same_file": 1.2,
            "incremental_quarter_small_file": 0.6,
            "code_location": 3.0,
        }.items()
    }

    ratios, targets = assess(phases, s3_peak=50.0)

    assert ratios == {
        "pipeline_over_baseline": 1.2,
        "plain_dbt_over_baseline": 1.5,
        "incremental_over_pipeline": 0.1,
        "incremental_quarter_table_over_full_table": 1.0,
        "incremental_quarter_file_over_full_file": 0.5,
        "pipeline_quarter_over_pipeline": 0.25,
    }
    assert {name: target["met"] for name, target in targets.items()} == {
        "pipeline_over_baseline": True,
        "incremental_over_pipeline": True,
        "peak_rss_mib": True,
        "code_location_s": True,
    }


def test_the_runs_dbt_calls_were_forks_of_the_warm_server(bench):
    """The pipeline and the incremental run hand dbt to the bench's dbt server: it parsed once,
    for the untimed parse, and both runs' builds ran on that parse."""
    server_log = (Path(bench["work_dir"]) / "logs" / "dbt-server.log").read_text()
    assert server_log.count("parsed the project") == 1
    # each pair's pipeline, then the incremental run
    assert server_log.count("`build` on the project parsed before") == PAIRS + 1
