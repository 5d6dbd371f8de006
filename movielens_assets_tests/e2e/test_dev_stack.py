"""The real stack, end to end: `movielens dev` (loopback S3, webserver, daemon) and its sensor.

Files are landed with `movielens land`, exactly as a user would; the test then waits for the
sensor's runs through Dagster's GraphQL API and checks the warehouse against expectations
computed with Python's csv module.
"""

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from movielens_assets.tools.dev_process import announced_endpoint, running_dev
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.e2e.deployment import graphql, land

pytestmark = pytest.mark.e2e

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }
"""
TICKS_QUERY = """
{
  sensorOrError(sensorSelector: {
    repositoryLocationName: "movielens", repositoryName: "__repository__",
    sensorName: "s3_landing_sensor"
  }) {
    ... on Sensor { sensorState { ticks(limit: 1) { status timestamp skipReason } } }
  }
}
"""
FAILURES_QUERY = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      eventConnection {
        events {
          ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
          ... on RunFailureEvent { message }
        }
      }
    }
  }
}
"""
MATERIALIZATION_QUERY = """
query ($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
      assetObservations(limit: 1) {
        runId
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""
"""An asset's latest materialization and latest observation (the dbt step records the
metadata it reads from the warehouse after dbt, such as ``rows_processed``, as an observation
after the model's materialization)."""


class Stack:
    def __init__(
        self,
        home: Path,
        port: int,
        env: dict[str, str],
        process: subprocess.Popen | None = None,
        log_start: int = 0,
    ) -> None:
        """``log_start``: where this start's output begins in ``home/dev.log`` (a restart on the
        same home appends to it)."""
        self.home, self.port, self.env, self.process = home, port, env, process
        self.log_start = log_start

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.port, query, variables)

    @property
    def s3_endpoint(self) -> str | None:
        """The S3 endpoint `movielens dev` announced in its log (None until it announced the UI)."""
        return announced_endpoint(self.home / "dev.log", self.log_start)

    def runs(self) -> list[dict]:
        return self.graphql(RUNS_QUERY)["runsOrError"]["results"]

    def wait_until_caught_up(self, since: float, timeout: float = 420) -> list[dict]:
        """Wait for a sensor tick after ``since`` that found nothing new, with every run
        finished; return the runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Not a Sensor yet while the code location is still loading: keep polling.
            sensor = self.graphql(TICKS_QUERY)["sensorOrError"]
            ticks = sensor["sensorState"]["ticks"] if "sensorState" in sensor else []
            runs = self.runs()
            quiet = ticks and ticks[0]["status"] == "SKIPPED" and ticks[0]["timestamp"] > since
            if quiet and all(run["status"] in FINISHED for run in runs):
                return runs
            time.sleep(2)
        raise AssertionError(f"the sensor did not catch up in {timeout} s: {self.runs()}")

    def failures(self, runs: list[dict]) -> str:
        """What went wrong in the failed runs, for assertion messages."""
        failed = [run["runId"] for run in runs if run["status"] != "SUCCESS"]
        events = [
            event
            for run_id in failed
            for event in self.graphql(FAILURES_QUERY, {"runId": run_id})["runOrError"][
                "eventConnection"
            ]["events"]
            if event
        ]
        return json.dumps(events, indent=1)[:4000]

    def land(self, path: Path, dataset: str) -> None:
        land(self.env, path, dataset)

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as connection:
            return connection.execute(sql).fetchall()


@contextlib.contextmanager
def running_stack(
    home: Path, settings: dict[str, str], ready_timeout: float, port: int | None = None
) -> Iterator[Stack]:
    """`movielens dev` on ``port`` (default: a free one) with ``MOVIELENS_HOME=home`` and
    ``settings``, none of the test process's own configuration (importing the dbt project sets
    MOVIELENS_DUCKDB_PATH), as ``tools/dev_process.running_dev`` starts it; stopped with its whole
    process group on exit (if still there)."""
    with running_dev(home, settings, port=port, ready_seconds=ready_timeout) as dev:
        running = Stack(home, dev.port, dev.env, dev.process, dev.log_start)
        running.graphql("{ version }")
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("dev-home")
    with running_stack(home, {"MOVIELENS_SENSOR_INTERVAL": "5"}, ready_timeout=300) as running:
        yield running


def expected_ratings(*files: Path) -> dict[tuple[int, int], tuple[float, int]]:
    """Latest rating per (user, movie), files applied in landing order."""
    latest = {}
    for path in files:
        for user, movie, rating, timestamp in csv_rows(path):
            latest[(int(user), int(movie))] = (float(rating), int(timestamp))
    return latest


def fct_ratings(stack: Stack) -> dict[tuple[int, int], tuple[float, int]]:
    rows = stack.query("select user_id, movie_id, rating, rated_at from dev.fct_ratings")
    return {
        (user, movie): (rating, int(rated_at.replace(tzinfo=UTC).timestamp()))
        for user, movie, rating, rated_at in rows
    }


def test_landing_the_sample_makes_the_sensor_build_everything_downstream(stack):
    for dataset in ("movies", "ratings", "tags", "links"):
        stack.land(SAMPLE / f"{dataset}.csv", dataset)
    runs = stack.wait_until_caught_up(since=time.time())
    assert runs and {run["status"] for run in runs} == {"SUCCESS"}, stack.failures(runs)
    for run in runs:
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert tags["dagster/sensor_name"] == "s3_landing_sensor"
    assert fct_ratings(stack) == expected_ratings(SAMPLE / "ratings.csv")
    assert stack.query("select count(*) from snapshots.snap_tags") == [
        (len(csv_rows(SAMPLE / "tags.csv")),)
    ]


def test_a_late_ratings_file_with_re_ratings_and_old_timestamps_is_merged_row_by_row(
    stack, tmp_path
):
    before = len(stack.runs())
    old = int(datetime(2001, 1, 1, tzinfo=UTC).timestamp())
    batch = tmp_path / "ratings-2018-10.csv"
    batch.write_text(
        "userId,movieId,rating,timestamp\n"
        f"1,1,1.5,{old}\n"  # a re-rating, with a timestamp older than the original
        f"1,2,3.0,{old}\n"  # user 1 never rated movie 2: new, and old
        f"611,1,5.0,{old + 10**9}\n"  # a new user
        f"610,1,2.0,{old}\n"
    )
    stack.land(batch, "ratings")
    runs = stack.wait_until_caught_up(since=time.time())
    assert len(runs) == before + 1
    assert {run["status"] for run in runs} == {"SUCCESS"}, stack.failures(runs)
    assert fct_ratings(stack) == expected_ratings(SAMPLE / "ratings.csv", batch)
    latest = stack.graphql(MATERIALIZATION_QUERY, {"path": ["facts", "fct_ratings"]})
    materialization = latest["assetOrError"]["assetMaterializations"][0]
    observation = latest["assetOrError"]["assetObservations"][0]
    assert observation["runId"] == materialization["runId"]
    metadata = {entry["label"]: entry.get("intValue") for entry in observation["metadataEntries"]}
    assert metadata["rows_processed"] == len(csv_rows(batch))
    # the sensor's tick recorded the file on the landing asset (no run of its own)
    landed = stack.graphql(MATERIALIZATION_QUERY, {"path": ["landing", "ratings"]})
    materialization = landed["assetOrError"]["assetMaterializations"][0]
    metadata = {
        entry["label"]: entry.get("intValue") for entry in materialization["metadataEntries"]
    }
    assert (metadata["files_new"], metadata["bytes"]) == (1, batch.stat().st_size)


def test_landing_the_same_file_again_adds_nothing(stack, tmp_path):
    rows_before = fct_ratings(stack)
    runs_before = len(stack.runs())
    ratings = tmp_path / "ratings.csv"
    ratings.write_bytes((SAMPLE / "ratings.csv").read_bytes())
    stack.land(ratings, "ratings")
    assert len(stack.wait_until_caught_up(since=time.time())) == runs_before
    assert fct_ratings(stack) == rows_before
    assert stack.query("select count(*) from raw.raw_ratings") == [
        (len(csv_rows(SAMPLE / "ratings.csv")) + 4,)
    ]
