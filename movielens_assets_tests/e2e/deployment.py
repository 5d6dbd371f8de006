"""Helpers of the crash tests: a big ratings file, a worker killed mid-load, runs read back from
GraphQL, polling with generous deadlines (the machine is shared and slow)."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from movielens_assets.tools.dev_process import graphql_payload
from movielens_assets_tests.conftest import SAMPLE

T = TypeVar("T")

NOT_FINISHED = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}
RUNS_QUERY = """
{
  runsOrError {
    ... on Runs {
      results { runId status parentRunId startTime endTime tags { key value } }
    }
  }
}
"""
MESSAGES_QUERY = """
query ($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) {
    ... on Run {
      eventConnection(afterCursor: $cursor) {
        cursor
        hasMore
        events { __typename ... on MessageEvent { message timestamp } }
      }
    }
  }
}
"""
WORKER_PID = re.compile(r"Executing steps in process \(pid: (\d+)\)")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    """One GraphQL request to the webserver on 127.0.0.1:``port``: its data, with no error."""
    payload = graphql_payload(port, query, variables)
    assert "errors" not in payload, payload
    return payload["data"]


def runs(port: int) -> list[dict[str, Any]]:
    """Every run, newest first, with its tags as a dict."""
    results = graphql(port, RUNS_QUERY)["runsOrError"]["results"]
    for run in results:
        run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
    return results


def messages(port: int, run_id: str) -> list[tuple[float, str]]:
    """(timestamp in seconds, message) of every event of a run."""
    found, cursor = [], None
    while True:
        connection = graphql(port, MESSAGES_QUERY, {"runId": run_id, "cursor": cursor})
        page = connection["runOrError"]["eventConnection"]
        found += [
            (float(event["timestamp"]) / 1000, event["message"])
            for event in page["events"]
            if event and event.get("message")
        ]
        cursor = page["cursor"]
        if not page["hasMore"]:
            return found


def write_big_ratings(path: Path, rows: int, first_user: int = 100_000) -> int:
    """A ratings file of ``rows`` new (user, movie) pairs: users from ``first_user`` up (the
    sample has 610), the sample's movies (so every dbt relationship test holds). Returns the rows
    written, counted back with Python's csv module."""
    with (SAMPLE / "movies.csv").open(newline="", encoding="utf-8") as handle:
        movies = [int(row["movieId"]) for row in csv.DictReader(handle)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        for number in range(rows):
            writer.writerow(
                [
                    first_user + number // len(movies),
                    movies[number % len(movies)],
                    (number % 10 + 1) / 2,
                    1_500_000_000 + number,
                ]
            )
    with path.open(newline="") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def environ_of(pid: int) -> dict[str, str]:
    """The environment a running process was started with (Linux /proc)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def kill_worker_mid_insert(
    port: int, run_id: str, key: str, timeout: float, home: Path
) -> tuple[int, float]:
    """SIGKILL the run's worker once it has started inserting ``key`` (downloaded, header
    checked, rows going into DuckDB, nothing committed). The process must be a worker of the
    stack under test (its ``MOVIELENS_HOME`` is ``home``). Returns its pid and the kill's time."""

    def inserting() -> int | None:
        lines = [message for _, message in messages(port, run_id)]
        pids = [int(m.group(1)) for line in lines if (m := WORKER_PID.search(line))]
        started = any(key in line and "inserting" in line for line in lines)
        return pids[0] if pids and started else None

    pid = wait_for(f"run {run_id} to start inserting {key}", inserting, timeout, every=0.2)
    worker_home = environ_of(pid).get("MOVIELENS_HOME", "")
    assert Path(worker_home).resolve() == home.resolve(), f"pid {pid} is not a worker here"
    os.kill(pid, signal.SIGKILL)
    return pid, time.time()


def land(env: dict[str, str], path: Path, dataset: str, bucket: str = "movielens") -> None:
    """``movielens land`` of one file into ``dataset``'s prefix, as a user lands it."""
    command = [sys.executable, "-m", "movielens_assets.tools.cli", "land", str(path)]
    result = subprocess.run(
        [*command, "--dataset", dataset],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert f"as s3://{bucket}/landing/{dataset}/{path.name}" in result.stdout, result.stdout
