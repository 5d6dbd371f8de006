"""The embedded default's crash safety: `movielens dev` (SQLite instance, loopback S3, DuckDB)
with a run worker SIGKILLed in the middle of the RAW load. The instance `movielens dev` writes
has run monitoring and run retries on: the dead run is marked failed, retried once, and the file
ends up in RAW and in fct_ratings exactly once (row counts from Python's csv module)."""

import time
from pathlib import Path

import boto3
import pytest

from movielens_assets.lib import s3 as s3lib
from movielens_assets.tools.local_s3 import LocalS3Server
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.e2e.deployment import (
    NOT_FINISHED,
    kill_worker_mid_insert,
    messages,
    runs,
    wait_for,
    write_big_ratings,
)
from movielens_assets_tests.e2e.test_dev_stack import running_stack

pytestmark = pytest.mark.e2e


def land_before_start(home: Path, files: dict[str, Path]) -> None:
    """Land files into the home's S3 state before `movielens dev` starts (it restores them), so
    the sensor's first tick sees them all and starts one run: a run for one file would also
    load the other (RAW of every dataset the downstream models need), racing its own retry."""
    server = LocalS3Server(home / "s3")
    endpoint = server.start()
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        s3lib.ensure_bucket(client, "movielens")
        for dataset, path in files.items():
            s3lib.upload(client, path, "movielens", f"landing/{dataset}/{path.name}")
    finally:
        server.stop()


BIG_ROWS = 12_000_000
"""Rows of the file whose insert is killed: on a quiet machine DuckDB inserted 4M in under half a
second, faster than the test could see the insert start (every 0.2 s) and kill the worker."""
RUN_TIMEOUT = 600


def test_a_worker_killed_mid_load_under_movielens_dev_is_retried_and_loads_the_file_once(
    tmp_path_factory,
):
    home = tmp_path_factory.mktemp("dev-kill-home")
    big = tmp_path_factory.mktemp("files") / "ratings-big.csv"
    rows = write_big_ratings(big, BIG_ROWS)
    key = "landing/ratings/ratings-big.csv"
    land_before_start(home, {"movies": SAMPLE / "movies.csv", "ratings": big})
    with running_stack(home, {"MOVIELENS_SENSOR_INTERVAL": "5"}, ready_timeout=180) as stack:

        def loading_run() -> dict | None:
            for run in runs(stack.port):
                if any(key in line for _, line in messages(stack.port, run["runId"])):
                    return run
            return None

        run = wait_for("the sensor's run of the big file", loading_run, RUN_TIMEOUT, every=1)
        pid, killed_at = kill_worker_mid_insert(stack.port, run["runId"], key, RUN_TIMEOUT, home)

        def dead() -> dict | None:
            found = [r for r in runs(stack.port) if r["runId"] == run["runId"]]
            return found[0] if found and found[0]["status"] == "FAILURE" else None

        wait_for("the dead run to be marked failed", dead, RUN_TIMEOUT, every=0.2)
        failed_after = time.time() - killed_at
        lines = [line for _, line in messages(stack.port, run["runId"])]
        assert not any("ratings-big.csv loaded" in line for line in lines), "killed too late"

        def retry_finished() -> dict | None:
            children = [r for r in runs(stack.port) if r["parentRunId"] == run["runId"]]
            return children[0] if children and children[0]["status"] not in NOT_FINISHED else None

        def all_finished() -> list[dict] | None:
            current = runs(stack.port)
            return current if not {r["status"] for r in current} & NOT_FINISHED else None

        retry = wait_for("the retry to finish", retry_finished, RUN_TIMEOUT)
        everything = wait_for("every run to finish", all_finished, RUN_TIMEOUT)
        assert retry["status"] == "SUCCESS", stack.failures([retry])
        dead_run = next(r for r in everything if r["runId"] == run["runId"])
        assert dead_run["tags"]["dagster/will_retry"] == "true"
        assert [r for r in everything if r["status"] == "FAILURE"] == [dead_run]

        assert stack.query(
            f"select count(*) from raw.raw_ratings where _source_file = '{key}'"
        ) == [(rows,)]
        assert stack.query(
            f"select count(*), sum(rows_loaded) from raw.load_ledger where s3_key = '{key}'"
        ) == [(1, rows)]
        assert stack.query("select count(*) from dev.fct_ratings") == [(rows,)]
        assert stack.query("select count(*) from raw.raw_movies") == [
            (len(csv_rows(SAMPLE / "movies.csv")),)
        ]
        retry_lines = messages(stack.port, retry["runId"])
        raw_at = next(at for at, line in retry_lines if "ratings-big.csv loaded" in line)
        print(
            f"\n[timing] movielens dev: worker {pid} killed -> run FAILURE {failed_after:.1f} s; "
            f"-> RAW loaded by the retry {raw_at - killed_at:.1f} s; "
            f"-> retry SUCCESS (fct_ratings built) {retry['endTime'] - killed_at:.1f} s"
        )
