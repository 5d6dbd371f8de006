"""The production topology, each part its own process, nothing mocked.

A throwaway PostgreSQL cluster holds the instance (``deploy/dagster.yaml``, copied into a fresh
``DAGSTER_HOME``), ``dagster code-server start`` serves the code location, ``dagster-webserver``
and ``dagster-daemon`` load it through ``deploy/workspace.yaml``, a standalone moto S3 server is
named by ``AWS_ENDPOINT_URL_S3``, and the warehouse is a DuckDB file (Snowflake cannot run here).
Runs are read through GraphQL and straight from Postgres (psycopg2); the warehouse is checked
against row counts taken with Python's csv module.
"""

from __future__ import annotations

import csv
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.e2e.deployment import (
    NOT_FINISHED,
    WORKER_PID,
    environ_of,
    graphql,
    kill_worker_mid_insert,
    land,
    messages,
    runs,
    wait_for,
    write_big_ratings,
)
from movielens_assets_tests.e2e.production import production
from movielens_assets_tests.e2e.test_run_faults import (
    descendants,
    is_dbt_build,
    processes,
    seconds_until_gone,
)
from movielens_assets_tests.postgres_cluster import Cluster

pytestmark = pytest.mark.e2e

BIG_ROWS = 12_000_000
"""A file whose insert takes seconds even on a quiet machine (4M rows were inserted in under half
a second there), so the worker is killed in the middle of it."""
DBT_ROWS = 2_000_000
"""Enough for dbt to work for seconds on fct_ratings, so the worker dies in the middle of it."""
RUN_TIMEOUT = 600


@dataclass
class Deployment:
    """The running processes' addresses and the environment they share."""

    env: dict[str, str]
    home: Path
    port: int
    postgres: Cluster

    def land(self, path: Path, dataset: str) -> None:
        land(self.env, path, dataset)

    def sql(self, query: str, parameters: tuple = ()) -> list[tuple]:
        with self.postgres.connect() as connection, connection.cursor() as cursor:
            cursor.execute(query, parameters)
            return cursor.fetchall()

    def warehouse(self, query: str) -> list[tuple]:
        with duckdb.connect(str(self.home / "warehouse.duckdb"), read_only=True) as connection:
            return connection.execute(query).fetchall()

    def runs(self) -> list[dict]:
        return runs(self.port)

    def all_finished(self) -> list[dict] | None:
        current = self.runs()
        return current if current and not {r["status"] for r in current} & NOT_FINISHED else None


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with production(tmp_path_factory.mktemp("production"), MOVIELENS_SENSOR_INTERVAL="5") as up:
        deployment = Deployment(up.env, up.root / "home", up.web_port, up.postgres)
        # Landed before the daemon starts: its first tick sees all four, one run.
        for dataset in ("movies", "ratings", "tags", "links"):
            deployment.land(SAMPLE / f"{dataset}.csv", dataset)
        up.start_servers()
        up.start_daemon()
        up.wait_for_webserver()
        yield deployment


def test_the_sensor_run_of_the_sample_is_recorded_in_postgres(deployment: Deployment):
    finished = wait_for("the sensor's run of the sample", deployment.all_finished, RUN_TIMEOUT)
    assert [run["status"] for run in finished] == ["SUCCESS"], finished
    run_id = finished[0]["runId"]
    assert finished[0]["tags"]["dagster/sensor_name"] == "s3_landing_sensor"
    # The run and its events are in the instance's PostgreSQL, not in a local SQLite file.
    assert deployment.sql("select status from runs where run_id = %s", (run_id,)) == [("SUCCESS",)]
    materialized = deployment.sql(
        "select count(*) from event_logs where run_id = %s "
        "and dagster_event_type = 'ASSET_MATERIALIZATION'",
        (run_id,),
    )[0][0]
    assert materialized > 10
    assert not list(Path(deployment.env["DAGSTER_HOME"]).glob("**/*.db"))  # no SQLite
    # Each pool (the DuckDB one this run used among them) has the limit of its own that the
    # migrate step's init-pools gave it: default_limit, 1.
    assert dict(
        deployment.sql(
            "select concurrency_key, count(*) from concurrency_slots group by concurrency_key"
        )
    ) == {"duckdb_warehouse": 1, "snowflake_raw_loads": 1, "snowflake_dbt_builds": 1}
    assert deployment.sql("select bool_or(using_default_limit) from concurrency_limits") == [
        (False,)
    ]
    ratings = csv_rows(SAMPLE / "ratings.csv")
    assert deployment.warehouse("select count(*) from raw.raw_ratings") == [(len(ratings),)]
    assert deployment.warehouse("select count(*) from dev.fct_ratings") == [(len(ratings),)]


LAUNCH = """
mutation ($selector: JobOrPipelineSelector!) {
  launchRun(executionParams: {selector: $selector, mode: "default"}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def test_two_runs_at_once_load_a_new_file_once(deployment: Deployment, tmp_path: Path):
    """A run started by hand (as from the UI) the moment a file lands, and the sensor's run of
    that file: the pool keeps their warehouse steps apart and the ledger loads the file once."""
    before = {run["runId"] for run in deployment.runs()}
    [(facts_before,)] = deployment.warehouse("select count(*) from dev.fct_ratings")
    extra = tmp_path / "ratings-extra.csv"
    extra.write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{200_000 + n},1,3.5,{1_600_000_000 + n}\n" for n in range(500))
    )
    selector = {
        "repositoryLocationName": "movielens",
        "repositoryName": "__repository__",
        "jobName": "raw_and_downstream_job",
        "assetSelection": [{"path": ["raw", "raw_ratings"]}],
    }
    deployment.land(extra, "ratings")
    launched = graphql(deployment.port, LAUNCH, {"selector": selector})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched

    def both_finished() -> list[dict] | None:
        finished = deployment.all_finished()
        mine = [r for r in finished or [] if r["runId"] not in before]
        return mine if len(mine) == 2 else None

    mine = wait_for("the sensor's run and the hand-started run", both_finished, RUN_TIMEOUT)
    assert {r["status"] for r in mine} == {"SUCCESS"}, mine
    assert sorted("dagster/sensor_name" in r["tags"] for r in mine) == [False, True]
    with extra.open(newline="") as handle:
        rows = sum(1 for _ in csv.reader(handle)) - 1
    key = "landing/ratings/ratings-extra.csv"
    assert deployment.warehouse(
        f"select count(*) from raw.raw_ratings where _source_file = '{key}'"
    ) == [(rows,)]
    assert deployment.warehouse(f"select count(*) from raw.load_ledger where s3_key = '{key}'") == [
        (1,)
    ]
    loads = [
        line
        for run in mine
        for _, line in messages(deployment.port, run["runId"])
        if "ratings-extra.csv loaded" in line
    ]
    assert len(loads) == 1, loads
    assert deployment.warehouse("select count(*) from dev.fct_ratings") == [(facts_before + rows,)]


def test_a_worker_killed_mid_load_is_failed_then_retried_and_the_file_loads_once(
    deployment: Deployment, tmp_path: Path
):
    before = {run["runId"] for run in deployment.runs()}
    [(facts_before,)] = deployment.warehouse("select count(*) from dev.fct_ratings")
    big = tmp_path / "ratings-big.csv"
    rows = write_big_ratings(big, BIG_ROWS)
    key = "landing/ratings/ratings-big.csv"
    deployment.land(big, "ratings")

    def new_run() -> dict | None:
        fresh = [run for run in deployment.runs() if run["runId"] not in before]
        return fresh[0] if fresh else None

    run = wait_for("the sensor's run of the big file", new_run, RUN_TIMEOUT)
    pid, killed_at = kill_worker_mid_insert(
        deployment.port, run["runId"], key, RUN_TIMEOUT, deployment.home
    )

    def failed() -> str | None:
        rows = deployment.sql(
            "select status, update_timestamp from runs where run_id = %s", (run["runId"],)
        )
        return rows[0][0] if rows and rows[0][0] == "FAILURE" else None

    wait_for("the dead run to be marked failed", failed, RUN_TIMEOUT, every=0.2)
    failed_after = time.time() - killed_at
    dead_lines = [line for _, line in messages(deployment.port, run["runId"])]
    assert not any("ratings-big.csv loaded" in line for line in dead_lines), "killed too late"

    def retried() -> dict | None:
        children = [r for r in deployment.runs() if r["parentRunId"] == run["runId"]]
        return children[0] if children and children[0]["status"] not in NOT_FINISHED else None

    retry = wait_for("the retry of the dead run to finish", retried, RUN_TIMEOUT)
    all_runs = wait_for("every run to finish", deployment.all_finished, RUN_TIMEOUT)
    assert retry["status"] == "SUCCESS"
    assert retry["tags"]["dagster/retry_number"] == "1"
    dead = next(r for r in all_runs if r["runId"] == run["runId"])
    assert dead["status"] == "FAILURE" and dead["tags"]["dagster/will_retry"] == "true"
    # Nothing landed after the big file: the dead run and its retry are the only new runs.
    assert {r["runId"] for r in all_runs} - before == {run["runId"], retry["runId"]}
    assert not deployment.sql(
        "select run_id, status from runs where status not in ('SUCCESS', 'FAILURE', 'CANCELED')"
    )

    assert deployment.warehouse(
        f"select count(*) from raw.raw_ratings where _source_file = '{key}'"
    ) == [(rows,)]
    assert deployment.warehouse(
        f"select count(*), sum(rows_loaded) from raw.load_ledger where s3_key = '{key}'"
    ) == [(1, rows)]
    assert deployment.warehouse("select count(*) from dev.fct_ratings") == [(facts_before + rows,)]

    retry_lines = messages(deployment.port, retry["runId"])
    raw_at = next(at for at, line in retry_lines if "ratings-big.csv loaded" in line)
    print(
        f"\n[timing] production topology: worker {pid} killed -> run FAILURE "
        f"{failed_after:.1f} s; -> RAW loaded by the retry {raw_at - killed_at:.1f} s; "
        f"-> retry SUCCESS (fct_ratings built) {retry['endTime'] - killed_at:.1f} s"
    )


def test_a_worker_killed_while_dbt_runs_takes_dbt_with_it_and_its_retry_builds_the_rest(
    deployment: Deployment, tmp_path: Path
):
    """Issue 15 on this topology: the run worker (a child of the code server) is SIGKILLed once
    its ``dbt build`` runs. Within 10 s no dbt of that run is left (``movielens-dbt`` ends it),
    and the automatic retry finishes with every row of the file once in ``fct_ratings``."""
    before = {run["runId"] for run in deployment.runs()}
    [(facts_before,)] = deployment.warehouse("select count(*) from dev.fct_ratings")
    big = tmp_path / "ratings-dbt.csv"
    rows = write_big_ratings(big, DBT_ROWS, first_user=500_000)
    key = "landing/ratings/ratings-dbt.csv"
    deployment.land(big, "ratings")

    def new_run() -> dict | None:
        fresh = [run for run in deployment.runs() if run["runId"] not in before]
        return fresh[0] if fresh else None

    run = wait_for("the sensor's run of the file", new_run, RUN_TIMEOUT)

    def dbt_running() -> tuple[int, list[int]] | None:
        lines = [line for _, line in messages(deployment.port, run["runId"])]
        workers = [int(found.group(1)) for line in lines if (found := WORKER_PID.search(line))]
        if not workers:
            return None
        dbts = [proc.pid for proc in descendants(workers[0], processes()) if is_dbt_build(proc)]
        return (workers[0], dbts) if dbts else None

    worker, dbt_pids = wait_for("the run's dbt build", dbt_running, RUN_TIMEOUT, every=0.2)
    home = environ_of(worker).get("MOVIELENS_HOME", "")
    assert Path(home).resolve() == deployment.home.resolve(), f"pid {worker} is not ours"
    os.kill(worker, signal.SIGKILL)
    killed_at = time.time()
    dbt_gone = seconds_until_gone(dbt_pids, timeout=10)
    assert dbt_gone <= 10, f"dbt {dbt_pids} outlived its killed worker {worker}"

    def retried() -> dict | None:
        children = [r for r in deployment.runs() if r["parentRunId"] == run["runId"]]
        return children[0] if children and children[0]["status"] not in NOT_FINISHED else None

    retry = wait_for("the retry of the dead run to finish", retried, RUN_TIMEOUT)
    wait_for("every run to finish", deployment.all_finished, RUN_TIMEOUT)
    assert retry["status"] == "SUCCESS"
    assert deployment.warehouse(
        f"select count(*), sum(rows_loaded) from raw.load_ledger where s3_key = '{key}'"
    ) == [(1, rows)]
    assert deployment.warehouse(
        f"select count(*) from raw.raw_ratings where _source_file = '{key}'"
    ) == [(rows,)]
    assert deployment.warehouse("select count(*) from dev.fct_ratings") == [(facts_before + rows,)]
    assert deployment.warehouse(
        "select count(*) from (select user_id, movie_id from dev.fct_ratings "
        "group by user_id, movie_id having count(*) > 1)"
    ) == [(0,)]
    print(
        f"\n[timing] production topology: worker {worker} killed while dbt ran -> dbt gone "
        f"{dbt_gone:.3f} s; -> retry SUCCESS {retry['endTime'] - killed_at:.1f} s"
    )


def test_a_rejected_file_fails_its_run_and_is_not_retried(deployment: Deployment, tmp_path: Path):
    """Last: the bad file stays in the landing folder (on_error=abort), so later ratings loads
    would fail on it too."""
    before = {run["runId"] for run in deployment.runs()}
    bad = tmp_path / "ratings-bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,four,964982703\n")
    deployment.land(bad, "ratings")

    def failed_run() -> dict | None:
        fresh = [r for r in deployment.runs() if r["runId"] not in before]
        done = [r for r in fresh if r["status"] == "FAILURE" and "dagster/will_retry" in r["tags"]]
        return done[0] if done else None

    run = wait_for("the run of the bad file to fail", failed_run, RUN_TIMEOUT)
    assert run["tags"]["dagster/failure_reason"] == "STEP_FAILURE"
    assert run["tags"]["dagster/will_retry"] == "false"
    all_runs = wait_for("every run to finish", deployment.all_finished, RUN_TIMEOUT)
    assert not [r for r in all_runs if r["parentRunId"] == run["runId"]]
    assert deployment.warehouse(
        "select count(*) from raw.raw_ratings where _source_file like '%ratings-bad.csv'"
    ) == [(0,)]
