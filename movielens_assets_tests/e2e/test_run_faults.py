"""Faults under `movielens dev`: a run that dies or is terminated takes its dbt with it, and
`movielens dev` killed with SIGKILL leaves nothing running and starts again on the same home.

Real parts only: `movielens dev` (loopback S3, webserver, daemon, code servers, run workers, dbt
through ``movielens-dbt``), a ratings file of a few million rows written and counted with
Python's csv module, processes found and killed through /proc. The tests share one stack and
run in order: each leaves the warehouse as the next expects it.

The times measured (worker's death to dbt's end, terminateRun to dbt's end, `movielens dev`'s
death to its last process's end) are printed (``pytest -s``) and kept as test properties; no
test asserts on them beyond the 10 s the issue allows.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from movielens_assets_tests.conftest import SAMPLE
from movielens_assets_tests.e2e.test_dev_stack import FINISHED, Stack, running_stack

pytestmark = pytest.mark.e2e

RATINGS_ROWS = 2_000_000
"""Enough for dbt to work for several seconds on fct_ratings and its tests."""
DBT_GONE_SECONDS = 10
STACK_GONE_SECONDS = 60
"""`movielens dev`'s processes get 10 s after SIGTERM, then SIGKILL; generous on a busy box."""
SETTINGS = {"MOVIELENS_SENSOR_INTERVAL": "5", "MOVIELENS_SENSOR_DEFAULT": "stopped"}

RUN_QUERY = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      status
      tags { key value }
      eventConnection(limit: 5000) {
        events {
          __typename
          ... on MessageEvent { message level }
          ... on MaterializationEvent { stepKey assetKey { path } }
        }
      }
    }
  }
}
"""
START_SENSOR = """
mutation {
  startSensor(sensorSelector: {
    repositoryLocationName: "movielens", repositoryName: "__repository__",
    sensorName: "s3_landing_sensor"
  }) { __typename ... on PythonError { message } }
}
"""
SENSOR_STATE = """
{
  sensorOrError(sensorSelector: {
    repositoryLocationName: "movielens", repositoryName: "__repository__",
    sensorName: "s3_landing_sensor"
  }) {
    ... on Sensor {
      sensorState {
        status
        typeSpecificData { ... on SensorData { lastCursor } }
        ticks(limit: 1) { status timestamp }
      }
    }
  }
}
"""
REEXECUTE = """
mutation ($runId: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $runId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
TERMINATE = """
mutation ($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""
DBT_BUILT = re.compile(
    r"\d+ of \d+ OK (?:created sql \w+ model|loaded seed file|snapshotted) \w+\.(\w+)"
)
"""dbt's own line for a node it built, as the step's captured output shows it."""


# --- processes, through /proc -------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    cmdline: list[str]


def processes() -> dict[int, Process]:
    """Every live (not zombie) process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            found[int(entry.name)] = Process(
                int(entry.name), int(ppid), [part.decode() for part in cmdline if part]
            )
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def of_home(pid: int, home: Path) -> bool:
    """Whether the process runs with ``MOVIELENS_HOME=home`` or names ``home``."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return f"MOVIELENS_HOME={home}".encode() in environ.split(b"\0") or str(home).encode() in (
        cmdline
    )


def descendants(root: int, table: dict[int, Process]) -> list[Process]:
    children: dict[int, list[Process]] = {}
    for process in table.values():
        children.setdefault(process.ppid, []).append(process)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def is_dbt_build(process: Process) -> bool:
    """dbt itself (``python -m movielens_assets.lib.dbt_process build ...``), not its
    ``movielens-dbt`` launcher."""
    return process.cmdline[1:3] == ["-m", "movielens_assets.lib.dbt_process"] and (
        "build" in process.cmdline
    )


def server_forks(table: dict[int, Process], home: Path) -> list[int]:
    """The dbt calls running on the home's dbt server (``lib/dbt_server.py``, which ``movielens
    dev`` starts): its forks, which have its command line, where the dbt of a run then runs."""
    servers = [
        process
        for process in table.values()
        if process.cmdline[1:3] == ["-m", "movielens_assets.lib.dbt_server"]
        and of_home(process.pid, home)
    ]
    pids = {server.pid for server in servers}
    return [server.pid for server in servers if server.ppid in pids]


def wait_for(what: str, probe: Callable[[], object], timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def seconds_until_gone(pids: list[int], timeout: float) -> float:
    """Seconds until none of ``pids`` is alive (polled every 2 ms); ``inf`` past ``timeout``."""
    started = time.monotonic()
    while any(alive(pid) for pid in pids):
        if time.monotonic() - started > timeout:
            return float("inf")
        time.sleep(0.002)
    return time.monotonic() - started


# --- the run being watched ----------------------------------------------------------------


def run_details(stack: Stack, run_id: str) -> dict:
    return stack.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]


def started_run(stack: Stack) -> str | None:
    running = [run["runId"] for run in stack.runs() if run["status"] == "STARTED"]
    return running[0] if running else None


def worker_pid(stack: Stack, run_id: str) -> int | None:
    """The run worker's pid, from the run's "Started process for run (pid: N)" event."""
    for event in run_details(stack, run_id)["eventConnection"]["events"]:
        found = re.search(r"Started process for run \(pid: (\d+)\)", event.get("message") or "")
        if found:
            return int(found.group(1))
    return None


@dataclass(frozen=True)
class RunningDbt:
    run_id: str
    worker: int
    launcher: int
    dbt: int
    forks: tuple[int, ...]
    """The dbt server's forks running then (the run's dbt, handed to the server by ``dbt``)."""

    @property
    def pids(self) -> list[int]:
        return [self.dbt, self.launcher, *self.forks]


def wait_for_dbt(stack: Stack, timeout: float = 400) -> RunningDbt:
    """The run now running and its dbt process (a descendant of its worker), once dbt runs."""

    def probe() -> RunningDbt | None:
        run_id = started_run(stack)
        worker = worker_pid(stack, run_id) if run_id else None
        if worker is None:
            return None
        table = processes()
        dbts = [process for process in descendants(worker, table) if is_dbt_build(process)]
        forks = tuple(server_forks(table, stack.home))
        if not dbts or not forks:
            return None
        return RunningDbt(run_id, worker, dbts[0].ppid, dbts[0].pid, forks)

    return wait_for("a run's dbt build process", probe, timeout, every=0.2)


def wait_finished(stack: Stack, run_id: str, timeout: float = 420) -> str:
    def probe() -> str | None:
        status = run_details(stack, run_id)["status"]
        return status if status in FINISHED else None

    return wait_for(f"run {run_id} to finish", probe, timeout, every=1)


def next_run(stack: Stack, failed_run_id: str) -> str:
    """The run after ``failed_run_id``: its automatic retry where the instance retries failed
    runs (``run_retries``), otherwise (or for a canceled run) a re-execution launched here."""
    config = yaml.safe_load((stack.home / "dagster" / "dagster.yaml").read_text()) or {}
    retried = (config.get("run_retries") or {}).get("enabled")
    if retried and run_details(stack, failed_run_id)["status"] == "FAILURE":

        def retry() -> str | None:
            for run in stack.runs():
                tags = {tag["key"]: tag["value"] for tag in run["tags"]}
                if tags.get("dagster/parent_run_id") == failed_run_id:
                    return run["runId"]
            return None

        return wait_for(f"the retry of {failed_run_id}", retry, timeout=120, every=1)
    launched = stack.graphql(REEXECUTE, {"runId": failed_run_id})["launchRunReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def compute_log(stack: Stack, run_id: str) -> str:
    """What the run's steps printed (dagster-dbt echoes dbt's lines), from the local compute
    log manager's files."""
    folder = stack.home / "dagster" / "storage" / run_id / "compute_logs"
    return "".join(path.read_text(errors="replace") for path in sorted(folder.glob("*.out")))


# --- data ---------------------------------------------------------------------------------


def write_ratings(path: Path, rows: int) -> None:
    """``rows`` ratings of distinct (user, movie) pairs, movies from the sample's movies.csv."""
    with (SAMPLE / "movies.csv").open(newline="") as handle:
        movies = [int(row["movieId"]) for row in csv.DictReader(handle)]
    per_user = 500  # 7 * 499 < len(movies): a user's movies are distinct
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        for index in range(rows):
            user, nth = divmod(index, per_user)
            movie = movies[(nth * 7 + user) % len(movies)]
            writer.writerow([user + 1, movie, (index % 10 + 1) / 2, 1_000_000_000 + index])


def csv_ratings_summary(path: Path) -> tuple[int, int, int, int, int]:
    """(rows, sum of users, of movies, of ratings x2, of timestamps), read with csv."""
    rows = users = movies = halves = stamps = 0
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for user, movie, rating, timestamp in reader:
            rows += 1
            users += int(user)
            movies += int(movie)
            halves += round(float(rating) * 2)
            stamps += int(timestamp)
    return rows, users, movies, halves, stamps


def fct_ratings_summary(stack: Stack) -> tuple[tuple[int, ...], int]:
    """The same summary of fct_ratings, and its number of distinct (user, movie) pairs."""
    [summary] = stack.query(
        "select count(*), sum(user_id), sum(movie_id), sum(round(rating * 2))::bigint, "
        "sum(epoch(rated_at))::bigint from dev.fct_ratings"
    )
    [(pairs,)] = stack.query(
        "select count(*) from (select distinct user_id, movie_id from dev.fct_ratings)"
    )
    return tuple(int(value) for value in summary), pairs


def s3_endpoint(stack: Stack) -> str:
    """The S3 endpoint `movielens dev` gave its webserver (read from the webserver's
    environment: the loopback server listens on a new port at every start)."""
    for pid, process in processes().items():
        if of_home(pid, stack.home) and any("dagster-webserver" in p for p in process.cmdline):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            for entry in environ:
                if entry.startswith(b"AWS_ENDPOINT_URL_S3="):
                    return entry.split(b"=", 1)[1].decode()
    raise AssertionError("no webserver of this stack with AWS_ENDPOINT_URL_S3")


def s3_listing(stack: Stack) -> dict[str, int]:
    """Key -> size of every object of the running stack's S3."""
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint(stack),
        aws_access_key_id="movielens-local",
        aws_secret_access_key="movielens-local",  # noqa: S106 - the loopback server's placeholder
        region_name="us-east-1",
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="movielens")
    return {obj["Key"]: obj["Size"] for page in pages for obj in page.get("Contents", [])}


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_ratings(tmp_path_factory) -> tuple[Path, tuple[int, ...]]:
    path = tmp_path_factory.mktemp("big") / "ratings-big.csv"
    write_ratings(path, RATINGS_ROWS)
    return path, csv_ratings_summary(path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("faults-home")
    with running_stack(home, SETTINGS, ready_timeout=240) as running:
        yield running


# --- tests --------------------------------------------------------------------------------


def test_movielens_dev_exits_non_zero_naming_the_port_when_it_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIELENS_", "DAGSTER_"))}
        result = subprocess.run(
            [sys.executable, "-m", "movielens_assets.tools.cli", "dev", "--port", str(port)],
            env={**env, "MOVIELENS_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert f"port {port} is taken" in result.stderr
    assert "webserver" in result.stderr
    assert not (tmp_path / "dagster").exists(), "nothing is started when the port is taken"


@pytest.mark.timeout(1800)  # three runs of a few million ratings; slow on a crowded machine
def test_dbt_ends_with_a_killed_worker_and_with_a_terminated_run_and_the_next_run_loads_all(
    stack, big_ratings, record_property
):
    """One story, to keep the test short: the sensor's run loses its worker (SIGKILL) once dbt
    has started; the next run is terminated from the UI once dbt has built something; the run
    after it succeeds with every landed rating in fct_ratings exactly once."""
    ratings, expected = big_ratings
    for dataset in ("movies", "tags", "links"):
        stack.land(SAMPLE / f"{dataset}.csv", dataset)
    stack.land(ratings, "ratings")
    assert stack.graphql(START_SENSOR)["startSensor"]["__typename"] == "Sensor"

    # 1. the run worker is SIGKILLed while dbt runs: its dbt ends with it
    killed = wait_for_dbt(stack)
    os.kill(killed.worker, signal.SIGKILL)
    seconds = seconds_until_gone(killed.pids, timeout=DBT_GONE_SECONDS)
    table = processes()
    left = [p for p in table.values() if is_dbt_build(p) and of_home(p.pid, stack.home)]
    left += server_forks(table, stack.home)
    assert seconds <= DBT_GONE_SECONDS and not left, f"dbt outlived its worker: {left}"
    record_property("worker_death_to_dbt_end_ms", round(seconds * 1000, 1))
    print(f"\nworker SIGKILL -> dbt gone: {seconds * 1000:.1f} ms")
    assert wait_finished(stack, killed.run_id, timeout=120) == "FAILURE"

    # 2. the next run is terminated once dbt has built its first model
    second = next_run(stack, killed.run_id)
    terminated = wait_for_dbt(stack)
    assert terminated.run_id == second
    wait_for(
        "dbt to build its first model",
        lambda: DBT_BUILT.search(compute_log(stack, second)),
        timeout=300,
        every=0.2,
    )
    assert all(map(alive, terminated.pids)), "dbt finished before it could be terminated"
    answer = stack.graphql(TERMINATE, {"runId": second})["terminateRun"]
    assert answer["__typename"] == "TerminateRunSuccess", answer
    seconds = seconds_until_gone(terminated.pids, DBT_GONE_SECONDS)
    assert seconds <= DBT_GONE_SECONDS, "dbt still runs 10 s after terminateRun"
    record_property("terminate_to_dbt_end_s", round(seconds, 2))
    print(f"\nterminateRun -> dbt gone: {seconds:.2f} s")
    assert wait_finished(stack, second, timeout=120) == "CANCELED"
    # its record names what dbt had built, as dbt itself reported it
    events = run_details(stack, second)["eventConnection"]["events"]
    materialized = {
        event["assetKey"]["path"][-1]
        for event in events
        if event["__typename"] == "MaterializationEvent"
        and event["stepKey"] == "movielens_dbt_models"
    }
    # (the materializations are streamed as dbt finishes each model: they are the record)
    built_by_dbt = set(DBT_BUILT.findall(compute_log(stack, second)))
    assert built_by_dbt and materialized == built_by_dbt

    # 3. the run after it succeeds: every landed rating once
    third = next_run(stack, second)
    assert wait_finished(stack, third) == "SUCCESS", stack.failures([{"runId": third}])
    summary, pairs = fct_ratings_summary(stack)
    assert summary == expected
    assert pairs == expected[0]


def test_movielens_dev_killed_with_sigkill_leaves_nothing_and_starts_again_on_the_same_home(
    stack, record_property
):
    def sensor() -> dict:
        return stack.graphql(SENSOR_STATE)["sensorOrError"]["sensorState"]

    runs = {run["runId"]: run["status"] for run in stack.runs()}
    assert runs and all(status in FINISHED for status in runs.values())
    cursor = sensor()["typeSpecificData"]["lastCursor"]
    landed = s3_listing(stack)
    assert cursor and len(landed) == 4
    ours = [pid for pid in processes() if of_home(pid, stack.home)]
    assert len(ours) >= 5, "webserver, daemon, their code servers and launchers"

    stack.process.kill()
    stack.process.wait()
    started = time.monotonic()
    left = wait_for(
        "every process of the killed `movielens dev` to end",
        lambda: not [pid for pid in processes() if of_home(pid, stack.home)] or None,
        timeout=STACK_GONE_SECONDS,
        every=0.1,
    )
    assert left
    record_property("dev_death_to_stack_end_s", round(time.monotonic() - started, 2))
    print(f"\nmovielens dev SIGKILL -> its last process gone: {time.monotonic() - started:.2f} s")

    since = time.time()
    with running_stack(stack.home, SETTINGS, ready_timeout=240, port=stack.port) as again:
        assert {run["runId"]: run["status"] for run in again.runs()} == runs
        assert again.graphql(SENSOR_STATE)["sensorOrError"]["sensorState"]["status"] == "RUNNING"
        assert s3_listing(again) == landed

        def quiet_tick() -> dict | None:
            ticks = again.graphql(SENSOR_STATE)["sensorOrError"]["sensorState"]["ticks"]
            return ticks[0] if ticks and ticks[0]["timestamp"] > since else None

        tick = wait_for("a sensor tick after the restart", quiet_tick, timeout=120, every=1)
        assert tick["status"] == "SKIPPED", "the restarted sensor requested files again"
        state = again.graphql(SENSOR_STATE)["sensorOrError"]["sensorState"]
        assert state["typeSpecificData"]["lastCursor"] == cursor
        assert len(again.runs()) == len(runs)
