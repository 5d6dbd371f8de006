"""``movielens bench --latency``: how long a landed ratings file takes to be queryable.

``movielens dev`` runs on a fresh ``MOVIELENS_HOME`` under ``work_dir`` with the product's
defaults (S3 notifications to the loopback queue, the default sensor interval). The sample is
landed and built first (untimed); then ``files`` small ratings files (new pairs of sample
users and movies) are landed one at a time, each after the previous one's run ended. For each:
from the upload's end to the end of the sensor's run that loaded it (``fct_ratings`` holds its
rows then; checked in the warehouse), split by Dagster's own timestamps into the tick wait
(upload to run created), the run start (created to started: queue, run worker), RAW (the
``raw_tables`` step), dbt (the dbt step) and the rest (the run's other steps and its end).

Measured once, kept out of the tests.
"""

from __future__ import annotations

import csv
import statistics
import time
from pathlib import Path
from typing import Any

import duckdb

from movielens_assets.datasets import DATASETS
from movielens_assets.settings import Settings
from movielens_assets.tools.bench_dev_idle import Progress
from movielens_assets.tools.bench_local_s3 import LocalS3BenchError, s3_client
from movielens_assets.tools.dev_process import graphql_payload, running_dev

RUNS_QUERY = """
{ runsOrError { ... on Runs { results {
    runId status creationTime startTime endTime
    tags { key value }
    stepStats { stepKey startTime endTime }
} } } }
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
RUN_TIMEOUT_SECONDS = 600
FIRST_NEW_USER = 1_000_000
"""User ids of the landed files start here: far above the sample's, so every pair is new."""


def _runs(port: int) -> list[dict[str, Any]]:
    payload = graphql_payload(port, RUNS_QUERY, timeout=30)
    if "errors" in payload:
        raise LocalS3BenchError(f"the webserver answered {payload['errors']}")
    return list(payload["data"]["runsOrError"]["results"])


def _wait_for_new_run(port: int, known: set[str], landed_at: float) -> dict[str, Any]:
    """The first run not in ``known``, once it has finished."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        new = [run for run in _runs(port) if run["runId"] not in known]
        if new and all(run["status"] in FINISHED for run in new):
            return min(new, key=lambda run: run["creationTime"])
        time.sleep(0.2)
    raise LocalS3BenchError(f"no run finished within {RUN_TIMEOUT_SECONDS} s of {landed_at}")


def _write_ratings(path: Path, number: int, movies: list[str], pairs: int) -> int:
    """A ratings file of ``pairs`` new (user, movie) pairs; returns its rows."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DATASETS["ratings"].header)
        for index in range(pairs):
            user = FIRST_NEW_USER + number
            writer.writerow([user, movies[index % len(movies)], "4.0", 1_700_000_000 + index])
    return pairs


def _split(run: dict[str, Any], landed_at: float) -> dict[str, float]:
    steps = {step["stepKey"]: step for step in run["stepStats"]}

    def seconds(key: str) -> float:
        step = steps.get(key)
        return (step["endTime"] - step["startTime"]) if step and step["endTime"] else 0.0

    raw, dbt = seconds("raw_tables"), seconds("movielens_dbt_models")
    total = run["endTime"] - landed_at
    tick = run["creationTime"] - landed_at
    start = run["startTime"] - run["creationTime"]
    return {
        "landed_to_queryable_s": round(total, 2),
        "tick_wait_s": round(tick, 2),
        "run_start_s": round(start, 2),
        "raw_s": round(raw, 2),
        "dbt_s": round(dbt, 2),
        "rest_s": round(total - tick - start - raw - dbt, 2),
    }


def measure_latency(
    work_dir: Path, files: int = 5, pairs: int = 50, progress: Progress = lambda m: None
) -> dict[str, Any]:
    """Land the sample, then ``files`` ratings files one at a time; time each to queryable."""
    home = work_dir / "latency-home"
    with running_dev(home, progress=progress) as stack:
        client = s3_client(stack.endpoint)
        sample = Settings.from_env({"MOVIELENS_HOME": str(home)}).sample_dir  # dev made it
        known: set[str] = set()
        progress("bench --latency: landing the sample and waiting for its run (untimed)")
        for name, dataset in DATASETS.items():
            path = sample / dataset.grouplens_file
            if path.exists():
                client.upload_file(str(path), "movielens", f"landing/{name}/{path.name}")
        first = _wait_for_new_run(stack.port, known, time.time())
        if first["status"] != "SUCCESS":
            raise LocalS3BenchError(f"the sample's run {first['runId']} ended {first['status']}")
        known = {run["runId"] for run in _runs(stack.port)}
        with (sample / "movies.csv").open(newline="") as handle:
            movies = [row[0] for row in list(csv.reader(handle))[1:]]
        measured = []
        for number in range(1, files + 1):
            path = work_dir / f"ratings-latency-{number}.csv"
            rows = _write_ratings(path, number, movies, pairs)
            client.upload_file(str(path), "movielens", f"landing/ratings/{path.name}")
            landed_at = time.time()
            run = _wait_for_new_run(stack.port, known, landed_at)
            known.add(run["runId"])
            if run["status"] != "SUCCESS":
                raise LocalS3BenchError(f"the run {run['runId']} for {path.name} failed")
            with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
                (found,) = connection.execute(
                    "select count(*) from dev.fct_ratings where user_id = ?",
                    [FIRST_NEW_USER + number],
                ).fetchone() or (0,)
            if found != rows:
                raise LocalS3BenchError(f"fct_ratings holds {found} of {path.name}'s {rows} rows")
            split = _split(run, landed_at)
            progress(f"bench --latency: file {number}: {split}")
            measured.append(split)
    totals = [item["landed_to_queryable_s"] for item in measured]
    return {
        "files": measured,
        "p50_s": round(statistics.median(totals), 2),
        "max_s": round(max(totals), 2),
        "median_split_s": {
            key: round(statistics.median(item[key] for item in measured), 2) for key in measured[0]
        },
    }


def format_latency(results: dict[str, Any]) -> str:
    """Each file's time to queryable and its split, then p50 and max."""
    keys = list(results["median_split_s"])
    lines = ["file  " + "".join(f"{key.removesuffix('_s'):>22}" for key in keys)]
    for number, item in enumerate(results["files"], 1):
        lines.append(f"{number:<6}" + "".join(f"{item[key]:>22.2f}" for key in keys))
    lines.append("p50   " + "".join(f"{results['median_split_s'][key]:>22.2f}" for key in keys))
    lines.append(
        f"landed to queryable: p50 {results['p50_s']:.2f} s, max {results['max_s']:.2f} s "
        "(target: p50 <= 20 s)"
    )
    return "\n".join(lines)
