"""``movielens bench``: the pipeline against the bare-DuckDB limit, on the same files, in one run.

Phases, each in its own subprocess so that each one's peak RSS is its own (``os.wait4`` reports
the largest resident set of the process and of every child it waited for, e.g. dbt):

1. ``baseline``: ``bench/baseline.sql`` in a fresh DuckDB file: the six CSVs, every model and
   every dbt test, typed straight into DuckDB (no Dagster, no dbt, no S3);
2. ``plain dbt``: RAW loaded by the baseline's RAW section (untimed), then ``dbt build`` alone;
3. ``pipeline``: the files landed in a loopback S3 server first (untimed), then ``movielens run``
   in a fresh ``MOVIELENS_HOME``; timed: the Dagster run, start to end, less its landing step
   (i.e. raw, dbt and the checks; each step's seconds are kept too);
4. ``incremental``: a ratings file with 1% new (user, movie) pairs and some re-ratings lands,
   the S3 landing sensor is ticked, and the run it requests is executed; measured on the full
   table and on a quarter-size table (same file, and a 1%-of-quarter file), to tell whether it
   grows with the file or with the table.

Plus the time to import the code location. ``run_bench`` returns (and ``--json`` writes)
everything; ``format_table`` renders the table the README shows. Timings are noisy on a shared
machine: they are measured once, not tuned, and kept out of the test suite.

The S3 server (moto) runs in its own process for the whole benchmark, as under ``movielens dev``;
``movielens run`` would start it in-process instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movielens_assets.datasets import DATASETS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BASELINE_SQL = PROJECT_ROOT / "bench" / "baseline.sql"
DBT_PROJECT_DIR = PROJECT_ROOT / "movielens_dbt"
SEED_FILE = DBT_PROJECT_DIR / "seeds" / "seed_movie_release_dates.csv"

ML_20M_RATINGS = 20_000_263
NEW_PAIRS_SHARE = 0.01
"""The incremental file's new (user, movie) pairs, as a share of the table's ratings."""
RE_RATINGS_PER_NEW_PAIR = 0.1
"""Re-ratings of existing pairs in the incremental file, per new pair."""
CODE_LOCATION_REPEATS = 3

TARGETS = {
    "pipeline_over_baseline": 2.0,
    "incremental_over_pipeline": 0.15,
    "peak_rss_mib": 4096.0,
    "code_location_s": 5.0,
}
"""Issue 5's targets at full ml-20m scale on a 2-core machine."""

RAW_SECTION_END = "-- Seed "
"""The header line ending the RAW section of ``bench/baseline.sql``."""

Progress = Callable[[str], None]


class BenchError(RuntimeError):
    """A benchmark phase failed; the message names the phase and its log file."""


# Child side: one function per phase, run as `python -m movielens_assets.tools.bench <phase>`.


def phase_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the ml-20m-shaped set ``spec['ratings']`` into ``spec['out_dir']``."""
    from movielens_assets.project import seed_movie_ids
    from movielens_assets.tools.generate import generate

    started = time.perf_counter()
    rows = generate(
        Path(spec["out_dir"]),
        ratings=spec["ratings"],
        seed=spec["seed"],
        movie_ids=seed_movie_ids(),
    )
    return {"timed_s": time.perf_counter() - started, "rows": rows}


def baseline_statements(script: str, raw_only: bool) -> str:
    """The baseline script, or only its RAW section (schemas and the six RAW tables)."""
    if not raw_only:
        return script
    end = script.find("\n" + RAW_SECTION_END)
    if end < 0:
        raise BenchError(f"{BASELINE_SQL} has no '{RAW_SECTION_END}...' header after its RAW part")
    return script[:end]


def phase_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``bench/baseline.sql`` (or its RAW section) on a fresh DuckDB file."""
    import duckdb

    database = Path(spec["database"])
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    script = baseline_statements(BASELINE_SQL.read_text(), raw_only=spec.get("raw_only", False))
    error = None
    started = time.perf_counter()
    with duckdb.connect(str(database)) as connection:
        connection.execute("set variable data_dir = ?", [spec["data_dir"]])
        connection.execute("set variable seed_file = ?", [str(SEED_FILE)])
        connection.execute("set variable loaded_at = ?", [datetime.now(UTC).replace(tzinfo=None)])
        try:
            connection.execute(script)
        except duckdb.InvalidInputException as failure:
            # The script's last statement raises when a test failed, like `dbt build` fails.
            if "baseline tests failed" not in str(failure):
                raise
            error = str(failure)
        timed = time.perf_counter() - started
        failed: list[str] = []
        tests = 0
        if not spec.get("raw_only", False):
            results = connection.execute(
                "select test_name, failures from bench.test_results order by test_name"
            ).fetchall()
            tests = len(results)
            failed = [name for name, failures in results if failures]
    return {"timed_s": timed, "tests": tests, "failed_tests": failed, "error": error}


def table_counts(database: Path) -> dict[str, int]:
    """Rows of every table (not view) in the raw, dev and snapshots schemas of a DuckDB file."""
    import duckdb

    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute(
            """select table_schema, table_name from information_schema.tables
            where table_type = 'BASE TABLE' and table_schema in ('raw', 'dev', 'snapshots')
            order by all"""
        ).fetchall()
        return {
            f"{schema}.{table}": connection.execute(
                f'select count(*) from "{schema}"."{table}"'
            ).fetchone()[0]
            for schema, table in tables
        }


def phase_counts(spec: dict[str, Any]) -> dict[str, Any]:
    """Row counts of a warehouse file (read-only, after the phase that wrote it ended)."""
    return {"counts": table_counts(Path(spec["database"]))}


def phase_s3_server(spec: dict[str, Any]) -> dict[str, Any]:
    """Serve moto's S3 API on loopback until SIGTERM; the endpoint goes to ``endpoint_file``."""
    from moto.server import ThreadedMotoServer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_file = Path(spec["endpoint_file"])
    partial = endpoint_file.with_suffix(".partial")
    partial.write_text(f"http://{host}:{port}")
    partial.rename(endpoint_file)
    while not stop.wait(1.0):
        pass
    server.stop()
    return {}


def land_files(bucket: str, files: Sequence[tuple[str, Path]]) -> dict[str, Any]:
    """Upload ``(dataset, path)`` files to the landing layout of ``bucket``, in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    from movielens_assets.lib import s3 as s3lib
    from movielens_assets.settings import Settings

    settings = Settings.from_env()
    client = s3lib.client()
    s3lib.ensure_bucket(client, bucket)
    started = time.perf_counter()

    def upload(item: tuple[str, Path]) -> int:
        dataset, path = item
        key = f"{settings.prefix}/{dataset}/{path.name}" if settings.prefix else path.name
        s3lib.upload(client, path, bucket, key)
        return path.stat().st_size

    with ThreadPoolExecutor(max_workers=4) as pool:
        sizes = list(pool.map(upload, files))
    return {"timed_s": time.perf_counter() - started, "files": len(files), "bytes": sum(sizes)}


def grouplens_files(data_dir: Path) -> list[tuple[str, Path]]:
    """The six files of a generated set as ``(dataset, path)``."""
    return [(name, data_dir / dataset.grouplens_file) for name, dataset in DATASETS.items()]


def phase_land(spec: dict[str, Any]) -> dict[str, Any]:
    """Land a generated set in the bucket named by ``MOVIELENS_S3_BUCKET``."""
    return land_files(os.environ["MOVIELENS_S3_BUCKET"], grouplens_files(Path(spec["data_dir"])))


def dbt_run_results(target_dir: Path) -> dict[str, Any]:
    """Where dbt's time went: total elapsed, seconds per resource type, the slowest nodes."""
    path = target_dir / "run_results.json"
    if not path.exists():
        return {}
    results = json.loads(path.read_text())
    nodes = [
        {
            "node": result["unique_id"].split(".")[2],
            "type": result["unique_id"].split(".", 1)[0],
            "status": result["status"],
            "seconds": round(result.get("execution_time") or 0.0, 2),
        }
        for result in results["results"]
    ]
    by_type: dict[str, float] = {}
    for node in nodes:
        by_type[node["type"]] = round(by_type.get(node["type"], 0.0) + node["seconds"], 2)
    return {
        "elapsed_s": round(results.get("elapsed_time") or 0.0, 2),
        "seconds_by_type": by_type,
        # A test found rows whether its severity made that a failure or a warning.
        "failed": sorted(n["node"] for n in nodes if n["status"] in ("fail", "error", "warn")),
        "slowest": sorted(nodes, key=lambda node: -node["seconds"])[:15],
    }


def dagster_dbt_run_results(run_id: str) -> dict[str, Any]:
    """``run_results.json`` of the dbt step of a Dagster run (dagster-dbt's per-run folder).

    dagster-dbt puts that folder under ``$DBT_TARGET_PATH``, which ``project.py`` points at
    ``$MOVIELENS_HOME/dbt-target``.
    """
    target = DBT_PROJECT_DIR / os.environ.get("DBT_TARGET_PATH", "target")
    folders = sorted(
        target.glob(f"movielens_dbt_models-{run_id[:7]}-*"), key=lambda path: path.stat().st_mtime
    )
    return dbt_run_results(folders[-1]) if folders else {}


def run_seconds(instance: Any, run_id: str) -> float | None:
    """Start to end of a Dagster run, from its run stats."""
    stats = instance.get_run_stats(run_id)
    if stats.start_time is None or stats.end_time is None:
        return None
    return stats.end_time - stats.start_time


def step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Seconds per step of a run (every step, not only the runner's three stages)."""
    import dagster as dg

    starts: dict[str, float] = {}
    seconds: dict[str, float] = {}
    ends = (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in ends and event.step_key in starts:
            seconds[event.step_key] = round(entry.timestamp - starts[event.step_key], 2)
    return seconds


def summary_fields(summary: Any) -> dict[str, Any]:
    """What the benchmark keeps of a runner ``Summary``."""
    return {
        "run_id": summary.run_id,
        "success": summary.success,
        "stages": summary.stages,
        "checks": summary.checks,
        "errors": summary.errors,
        "asset_rows": {asset.key: asset.rows for asset in summary.assets},
    }


def phase_pipeline(spec: dict[str, Any]) -> dict[str, Any]:
    """``movielens run --data <set>`` in-process, as the command does it."""
    import dagster as dg

    from movielens_assets.settings import Settings
    from movielens_assets.tools.runner import run_pipeline

    settings = Settings.from_env()
    started = time.perf_counter()
    summary = run_pipeline(settings, data_dir=Path(spec["data_dir"]))
    total = time.perf_counter() - started
    with dg.DagsterInstance.get() as instance:
        run_wall = run_seconds(instance, summary.run_id)
        steps = step_seconds(instance, summary.run_id)
    return {
        "steps": steps,
        **summary_fields(summary),
        "process_work_s": total,
        "run_wall_s": run_wall,
        "dbt": dagster_dbt_run_results(summary.run_id),
    }


def phase_make_increment(spec: dict[str, Any]) -> dict[str, Any]:
    """Write a ratings file of ``new`` new (user, movie) pairs and ``rerated`` re-ratings.

    New pairs join existing users with movies of ``movies.csv`` that the user has not rated in
    any of ``existing`` (the files already landed); re-ratings change the rating of existing
    pairs. Every timestamp is later than the latest existing one. Deterministic for ``seed``.
    """
    import duckdb

    columns = (
        "{'userId': 'integer', 'movieId': 'integer', 'rating': 'double', 'timestamp': 'bigint'}"
    )
    out = Path(spec["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    seed, new, rerated = int(spec["seed"]), int(spec["new"]), int(spec["rerated"])
    with duckdb.connect() as connection:
        connection.execute(
            f"""create table existing as
            select * from read_csv($files, header = true, auto_detect = false, columns = {columns})
            """,
            {"files": spec["existing"]},
        )
        connection.execute(
            """create table movies as
            select row_number() over (order by movieId) - 1 as ordinal, movieId
            from read_csv($path, header = true, auto_detect = false,
                columns = {'movieId': 'integer', 'title': 'varchar', 'genres': 'varchar'})""",
            {"path": spec["movies"]},
        )
        connection.execute(
            """create table users as
            select row_number() over (order by userId) - 1 as ordinal, userId
            from (select distinct userId from existing)"""
        )
        latest, users, movies = connection.execute(
            "select max(timestamp), (select count(*) from users), (select count(*) from movies)"
            " from existing"
        ).fetchone()
        # Plain equi-joins and anti-joins only: 20M existing rows are scanned once each.
        connection.execute(
            f"""create table new_pairs as
            with candidates as (
                select
                    i,
                    hash(i, {seed}, 'user') % {users} as user_ordinal,
                    hash(i, {seed}, 'movie') % {movies} as movie_ordinal
                from range({3 * new + 100}) as candidates (i)
            ),
            pairs as (
                select candidates.i, users.userId, movies.movieId
                from candidates
                inner join users on users.ordinal = candidates.user_ordinal
                inner join movies on movies.ordinal = candidates.movie_ordinal
            )
            select userId, movieId, min(i) as i
            from pairs
            anti join existing using (userId, movieId)
            group by userId, movieId
            order by i
            limit {new}"""
        )
        connection.execute(
            f"""create table rerated_pairs as
            select userId, movieId, rating
            from (
                select userId, movieId, rating, timestamp
                from existing
                order by hash(userId, movieId, {seed}, 'rerate'), timestamp desc
                limit {2 * rerated}
            )
            qualify row_number() over (partition by userId, movieId order by timestamp desc) = 1
            order by hash(userId, movieId, {seed}, 'rerate')
            limit {rerated}"""
        )
        written = connection.execute(
            f"""copy (
            with rows as (
                select
                    userId,
                    movieId,
                    (1 + hash(userId, movieId, {seed}, 'stars') % 10) / 2 as rating,
                    {latest} + 1 + hash(userId, movieId, {seed}, 'when') % 2592000 as timestamp
                from new_pairs
                union all
                select
                    userId,
                    movieId,
                    -- Any other star value: shift by 1 to 9 half stars, modulo 10.
                    ((cast(rating * 2 as integer) - 1 + 1 + hash(userId, movieId, {seed}) % 9)
                        % 10 + 1) / 2 as rating,
                    {latest} + 1 + hash(userId, movieId, {seed}, 'when') % 2592000 as timestamp
                from rerated_pairs
            )
            select
                userId,
                movieId,
                cast(rating as decimal(2, 1)) as rating,
                cast(timestamp as bigint) as timestamp
            from rows
            order by userId, movieId
            ) to '{out}' (header, delimiter ',')"""
        ).fetchone()[0]
        counted = connection.execute(
            f"""with increment as (
                select distinct userId, movieId
                from read_csv('{out}', header = true, auto_detect = false, columns = {columns})
            )
            select
                (select count(*) from increment anti join existing using (userId, movieId)),
                (select count(*) from increment semi join existing using (userId, movieId))"""
        ).fetchone()
    return {"path": str(out), "rows": written, "new_pairs": counted[0], "rerated": counted[1]}


def phase_incremental(spec: dict[str, Any]) -> dict[str, Any]:
    """Land one more ratings file; tick the landing sensor; execute the run it requests.

    The sensor's cursor is taken before the file lands, so the tick sees exactly that file. The
    requested run executes in-process (as ``movielens run`` does); the daemon would launch it
    in a new process instead. The benchmark counts the run, start to end; the tick and the run
    together are kept as ``tick_and_run_s``; landing the file is not timed.
    """
    import contextlib as _contextlib

    import dagster as dg

    from movielens_assets.definitions import build_definitions
    from movielens_assets.defs.automation.sensors import SENSOR_NAME
    from movielens_assets.settings import Settings
    from movielens_assets.tools.runner import (
        ensure_manifest,
        prepare_instance,
        stage_seconds,
        summarize,
    )

    settings = Settings.from_env()
    prepare_instance(settings)
    ensure_manifest()
    with _contextlib.redirect_stdout(sys.stderr):
        defs = build_definitions()
        sensor = defs.resolve_sensor_def(SENSOR_NAME)
        resources = {"s3": defs.resources["s3"]}
        with dg.DagsterInstance.get() as instance:
            before = sensor(
                dg.build_sensor_context(instance=instance, resources=resources, definitions=defs)
            )
            landed = land_files(settings.bucket, [("ratings", Path(spec["file"]))])
            started = time.perf_counter()
            tick = sensor(
                dg.build_sensor_context(
                    instance=instance, cursor=before.cursor, resources=resources, definitions=defs
                )
            )
            if len(tick.run_requests) != 1:
                raise BenchError(f"the sensor requested {len(tick.run_requests)} runs, not 1")
            request = tick.run_requests[0]
            job = defs.resolve_job_def(request.job_name or sensor.job_name)
            result = job.execute_in_process(
                instance=instance,
                asset_selection=request.asset_selection,
                tags=request.tags,
                raise_on_error=False,
            )
            tick_and_run = time.perf_counter() - started
            summary = summarize(result, job)
            summary.stages = stage_seconds(instance, result.run_id)
            run_wall = run_seconds(instance, result.run_id)
            steps = step_seconds(instance, result.run_id)
    return {
        "steps": steps,
        **summary_fields(summary),
        "tick_and_run_s": tick_and_run,
        "run_wall_s": run_wall,
        "landing_s": landed["timed_s"],
        "selection": sorted(key.to_user_string() for key in request.asset_selection or []),
        "dbt": dagster_dbt_run_results(result.run_id),
    }


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "generate": phase_generate,
    "baseline": phase_baseline,
    "counts": phase_counts,
    "s3-server": phase_s3_server,
    "land": phase_land,
    "pipeline": phase_pipeline,
    "make-increment": phase_make_increment,
    "incremental": phase_incremental,
}


def max_rss_mib(who: int) -> float:
    """Peak RSS in MiB of this process (``RUSAGE_SELF``) or its waited-for children."""
    import resource

    return resource.getrusage(who).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    """Run one phase: ``python -m movielens_assets.tools.bench <phase> <spec-json> <out-json>``."""
    import resource

    parser = argparse.ArgumentParser(prog="python -m movielens_assets.tools.bench")
    parser.add_argument("phase", choices=sorted(PHASES))
    parser.add_argument("spec", help="the phase's arguments as a JSON object")
    parser.add_argument("out", help="file to write the phase's result to, as JSON")
    args = parser.parse_args(argv)
    result = PHASES[args.phase](json.loads(args.spec))
    result["self_peak_rss_mib"] = max_rss_mib(resource.RUSAGE_SELF)
    result["children_peak_rss_mib"] = max_rss_mib(resource.RUSAGE_CHILDREN)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


# Parent side --------------------------------------------------------------------------------


@dataclass
class Measured:
    """A finished subprocess: wall seconds, peak RSS of its tree, exit code, its result."""

    wall_s: float
    peak_rss_mib: float
    returncode: int
    result: dict[str, Any]
    log: Path


class Runner:
    """Starts phases as subprocesses with a controlled environment and measures them."""

    def __init__(self, work: Path, progress: Progress) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.base_env = clean_environment()
        self.endpoint: str | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """The children's environment: no inherited MOVIELENS_/AWS endpoint/Dagster settings."""
        env = dict(self.base_env)
        if self.endpoint:
            env["AWS_ENDPOINT_URL_S3"] = self.endpoint
        env.update(extra)
        return env

    def command(
        self,
        label: str,
        argv: Sequence[str],
        env: dict[str, str],
        check: bool = True,
        result_file: Path | None = None,
    ) -> Measured:
        """Run ``argv`` to completion; wall time and ``wait4``'s peak RSS of its tree."""
        log = self.logs / f"{label}.log"
        started = time.perf_counter()
        with log.open("wb") as handle:
            process = subprocess.Popen(
                list(argv), env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
            )
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if check and process.returncode != 0:
            raise BenchError(
                f"bench phase {label} exited with {process.returncode}; see {log}:\n" + tail(log)
            )
        result = {}
        if result_file is not None and result_file.exists():
            result = json.loads(result_file.read_text())
        return Measured(wall, usage.ru_maxrss / 1024, process.returncode, result, log)

    def phase(self, label: str, phase: str, spec: dict[str, Any], **env: str) -> Measured:
        """Run one phase of this module in a subprocess."""
        self.progress(f"bench: {label} ...")
        out = self.work / "results" / f"{label}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "movielens_assets.tools.bench",
            phase,
            json.dumps(spec),
            str(out),
        ]
        measured = self.command(label, argv, self.env(**env), result_file=out)
        self.progress(
            f"bench: {label}: {measured.wall_s:.1f} s, peak RSS {measured.peak_rss_mib:,.0f} MiB"
        )
        return measured

    @contextlib.contextmanager
    def s3_server(self) -> Iterator[dict[str, Any]]:
        """The loopback S3 server process for the whole benchmark; yields its record."""
        endpoint_file = self.work / "s3-endpoint.txt"
        endpoint_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "movielens_assets.tools.bench",
            "s3-server",
            json.dumps({"endpoint_file": str(endpoint_file)}),
            str(self.work / "results" / "s3-server.json"),
        ]
        (self.work / "results").mkdir(parents=True, exist_ok=True)
        log = (self.logs / "s3-server.log").open("wb")
        process = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        record: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + 60
            while not endpoint_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the S3 server did not start; see {log.name}")
                time.sleep(0.1)
            self.endpoint = endpoint_file.read_text().strip()
            yield record
        finally:
            self.endpoint = None
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                record["peak_rss_mib"] = usage.ru_maxrss / 1024
            log.close()


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that would point a phase elsewhere."""
    from movielens_assets.tools.local_s3 import LOCAL_CREDENTIALS

    dropped = ("MOVIELENS_", "AWS_ENDPOINT_URL", "DAGSTER_", "DBT_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    env.update(LOCAL_CREDENTIALS)
    env["DO_NOT_TRACK"] = "1"
    env["MOVIELENS_TARGET"] = "local"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def machine_facts() -> dict[str, Any]:
    """Cores, memory, CPU model, load and versions: what the figures depend on."""
    import dagster
    import duckdb
    from dbt.version import __version__ as dbt_version

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu": cpu,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "dagster": dagster.__version__,
        "dbt": dbt_version,
        "platform": platform.platform(),
    }


def phase_line(
    measured: Measured, timed_s: float, rows: int, what: str, **extra: Any
) -> dict[str, Any]:
    """One row of the results table."""
    return {
        "what": what,
        "wall_s": round(timed_s, 2),
        "process_wall_s": round(measured.wall_s, 2),
        "peak_rss_mib": round(measured.peak_rss_mib, 1),
        "rows": rows,
        "rows_per_s": round(rows / timed_s) if timed_s > 0 else None,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        **extra,
    }


def plain_dbt(runner: Runner, data_dir: Path, ratings: int) -> tuple[dict, dict, Path]:
    """RAW loaded by the baseline's RAW section (untimed), then ``dbt build`` alone (timed)."""
    folder = runner.work / "plain-dbt"
    database = folder / "warehouse.duckdb"
    preload = runner.phase(
        "plain-dbt-raw-load",
        "baseline",
        {"database": str(database), "data_dir": str(data_dir), "raw_only": True},
    )
    target = folder / "target"
    target.mkdir(parents=True, exist_ok=True)
    # As dagster-dbt does for each invocation: reuse the project's partial parse.
    partial = DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
    if partial.exists():
        shutil.copy(partial, target / "partial_parse.msgpack")
    dbt = Path(sys.executable).parent / "dbt"
    argv = [
        str(dbt if dbt.exists() else "dbt"),
        "build",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(folder / "logs"),
    ]
    runner.progress("bench: plain dbt build ...")
    measured = runner.command(
        "plain-dbt-build",
        argv,
        runner.env(MOVIELENS_DUCKDB_PATH=str(database)),
        check=False,
    )
    run_results = dbt_run_results(target)
    if not run_results:
        raise BenchError(
            f"dbt build wrote no run_results.json; see {measured.log}:\n" + tail(measured.log)
        )
    runner.progress(f"bench: plain dbt build: {measured.wall_s:.1f} s")
    line = phase_line(
        measured,
        measured.wall_s,
        ratings,
        "dbt build alone on a preloaded RAW",
        exit_code=measured.returncode,
        dbt=run_results,
        failed_tests=run_results.get("failed", []),
    )
    load_line = phase_line(
        preload,
        preload.result["timed_s"],
        ratings,
        "RAW preload for plain dbt (baseline.sql RAW section; untimed)",
    )
    return line, load_line, database


def pipeline_at(
    runner: Runner, label: str, data_dir: Path, ratings: int, bucket: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Land a set in its own bucket (untimed), then ``movielens run`` in a fresh home."""
    home = runner.work / "homes" / label
    shutil.rmtree(home, ignore_errors=True)
    env = {"MOVIELENS_HOME": str(home), "MOVIELENS_S3_BUCKET": bucket}
    landed = runner.phase(f"land-{label}", "land", {"data_dir": str(data_dir)}, **env)
    measured = runner.phase(f"pipeline-{label}", "pipeline", {"data_dir": str(data_dir)}, **env)
    result = measured.result
    stages = result["stages"]
    landing = result["steps"].get("landing_files", stages.get("landing", 0.0))
    line = phase_line(
        measured,
        result["run_wall_s"] - landing,
        ratings,
        "movielens run: the run start to end, less its landing step (files already in S3)",
        stages=stages,
        steps=result["steps"],
        run_wall_s=result["run_wall_s"],
        process_work_s=round(result["process_work_s"], 2),
        python_peak_rss_mib=round(result["self_peak_rss_mib"], 1),
        dbt_peak_rss_mib=round(result["children_peak_rss_mib"], 1),
        success=result["success"],
        checks=result["checks"],
        errors=result["errors"],
        failed_tests=result["dbt"].get("failed", []),
        dbt=result["dbt"],
        warehouse=str(home / "warehouse.duckdb"),
        counts=runner.phase(
            f"counts-pipeline-{label}", "counts", {"database": str(home / "warehouse.duckdb")}
        ).result["counts"],
    )
    land_line = phase_line(
        landed,
        landed.result["timed_s"],
        ratings,
        "files uploaded to S3 (untimed)",
        bytes=landed.result["bytes"],
    )
    return line, land_line, env


def incremental_at(
    runner: Runner,
    label: str,
    env: dict[str, str],
    data_dir: Path,
    existing: list[Path],
    new: int,
    seed: int,
    table_rows: int,
) -> tuple[dict[str, Any], Path]:
    """Write an increment file, then land it and run what the sensor requests."""
    file = runner.work / "increments" / label / f"ratings-increment-{label}.csv"
    made = runner.phase(
        f"make-increment-{label}",
        "make-increment",
        {
            "out": str(file),
            "existing": [str(path) for path in existing],
            "movies": str(data_dir / "movies.csv"),
            "new": new,
            "rerated": max(1, round(new * RE_RATINGS_PER_NEW_PAIR)),
            "seed": seed,
        },
    ).result
    measured = runner.phase(f"incremental-{label}", "incremental", {"file": str(file)}, **env)
    result = measured.result
    line = phase_line(
        measured,
        result["run_wall_s"],
        made["rows"],
        f"the run the sensor requests, start to end, on a {table_rows:,}-row table",
        table_rows=table_rows,
        steps=result["steps"],
        file=str(file),
        new_pairs=made["new_pairs"],
        rerated=made["rerated"],
        stages=result["stages"],
        tick_and_run_s=round(result["tick_and_run_s"], 2),
        run_wall_s=result["run_wall_s"],
        python_peak_rss_mib=round(result["self_peak_rss_mib"], 1),
        dbt_peak_rss_mib=round(result["children_peak_rss_mib"], 1),
        success=result["success"],
        checks=result["checks"],
        errors=result["errors"],
        failed_tests=result["dbt"].get("failed", []),
        selection=result["selection"],
        dbt=result["dbt"],
        counts=runner.phase(
            f"counts-incremental-{label}",
            "counts",
            {"database": str(Path(env["MOVIELENS_HOME"]) / "warehouse.duckdb")},
        ).result["counts"],
    )
    return line, file


def code_location(runner: Runner, env: dict[str, str], repeats: int) -> dict[str, Any]:
    """Wall time of ``from movielens_assets.definitions import defs`` in a new process."""
    walls, peaks = [], []
    for number in range(1, repeats + 1):
        measured = runner.command(
            f"code-location-{number}",
            [sys.executable, "-c", "from movielens_assets.definitions import defs"],
            runner.env(**env),
        )
        walls.append(measured.wall_s)
        peaks.append(measured.peak_rss_mib)
    runner.progress(f"bench: code location loads in {', '.join(f'{w:.1f}' for w in walls)} s")
    return {
        "what": f"import the code location (median of {repeats})",
        "wall_s": round(statistics.median(walls), 2),
        "all_s": [round(wall, 2) for wall in walls],
        "peak_rss_mib": round(max(peaks), 1),
        "rows": None,
        "rows_per_s": None,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded, or None if either is missing or zero."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def assess(phases: dict[str, dict[str, Any]], s3_peak: float | None) -> tuple[dict, dict]:
    """The ratios and, for each target, the measured value and whether it is met."""
    pipeline = phases["pipeline"]["wall_s"]
    baseline = phases["baseline"]["wall_s"]
    incremental = phases["incremental"]["wall_s"]

    def wall(name: str) -> float | None:
        return phases[name]["wall_s"] if name in phases else None

    ratios = {
        "pipeline_over_baseline": ratio(pipeline, baseline),
        "plain_dbt_over_baseline": ratio(wall("plain_dbt"), baseline),
        "incremental_over_pipeline": ratio(incremental, pipeline),
        "incremental_quarter_table_over_full_table": ratio(
            wall("incremental_quarter_same_file"), incremental
        ),
        "incremental_quarter_file_over_full_file": ratio(
            wall("incremental_quarter_small_file"), wall("incremental_quarter_same_file")
        ),
        "pipeline_quarter_over_pipeline": ratio(wall("pipeline_quarter"), pipeline),
    }
    orchestrated = [
        name
        for name in phases
        if name.startswith(("pipeline", "incremental", "plain_dbt", "code_location"))
    ]
    rss = {name: phases[name]["peak_rss_mib"] for name in orchestrated}
    if s3_peak is not None:
        rss["s3_server"] = round(s3_peak, 1)
    largest = max(rss, key=lambda name: rss[name])
    targets = {
        "pipeline_over_baseline": {
            "target": f"<= {TARGETS['pipeline_over_baseline']}",
            "value": ratios["pipeline_over_baseline"],
            "met": _at_most(ratios["pipeline_over_baseline"], TARGETS["pipeline_over_baseline"]),
        },
        "incremental_over_pipeline": {
            "target": f"<= {TARGETS['incremental_over_pipeline']:.0%}",
            "value": ratios["incremental_over_pipeline"],
            "met": _at_most(
                ratios["incremental_over_pipeline"], TARGETS["incremental_over_pipeline"]
            ),
        },
        "peak_rss_mib": {
            "target": f"<= {TARGETS['peak_rss_mib']:.0f} MiB in every process",
            "value": rss[largest],
            "largest": largest,
            "met": rss[largest] <= TARGETS["peak_rss_mib"],
        },
        "code_location_s": {
            "target": f"<= {TARGETS['code_location_s']} s",
            "value": phases["code_location"]["wall_s"],
            "met": phases["code_location"]["wall_s"] <= TARGETS["code_location_s"],
        },
    }
    return ratios, targets


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def run_bench(
    ratings: int = ML_20M_RATINGS,
    json_path: Path | None = None,
    work_dir: Path | None = None,
    progress: Progress | None = None,
    seed: int = 42,
    code_location_repeats: int = CODE_LOCATION_REPEATS,
    quarter: bool = True,
) -> dict[str, Any]:
    """Generate a set of ``ratings`` ratings and measure every phase on it; see the module doc.

    ``work_dir`` keeps the generated files, the DuckDB files, the logs (``logs/``) and each
    phase's raw result (``results/``); default: a new temporary folder, kept. ``quarter=False``
    skips the second table size (its pipeline and two incremental runs; their ratios are then
    None). Returns the results, also written to ``json_path`` if given.
    """
    report = progress or (lambda message: None)
    work = (work_dir or Path(tempfile.mkdtemp(prefix="movielens-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work, report)
    quarter_rows = max(ratings // 4, 1_000)
    new_full = max(1, round(ratings * NEW_PAIRS_SHARE))
    new_quarter = max(1, round(quarter_rows * NEW_PAIRS_SHARE))
    started = time.perf_counter()
    facts = machine_facts()
    report(f"bench: {ratings:,} ratings on {facts['cores']} cores; work in {work}")

    full_dir, quarter_dir = work / "data" / "full", work / "data" / "quarter"
    prep: dict[str, dict[str, Any]] = {}
    sizes = [("full", ratings, full_dir)]
    if quarter:
        sizes.append(("quarter", quarter_rows, quarter_dir))
    for label, size, folder in sizes:
        shutil.rmtree(folder, ignore_errors=True)
        generated = runner.phase(
            f"generate-{label}", "generate", {"out_dir": str(folder), "ratings": size, "seed": seed}
        )
        prep[f"generate_{label}"] = phase_line(
            generated,
            generated.result["timed_s"],
            size,
            "movielens generate (untimed)",
            dataset_rows=generated.result["rows"],
        )

    phases: dict[str, dict[str, Any]] = {}
    baseline = runner.phase(
        "baseline",
        "baseline",
        {"database": str(work / "baseline" / "baseline.duckdb"), "data_dir": str(full_dir)},
    )
    phases["baseline"] = phase_line(
        baseline,
        baseline.result["timed_s"],
        ratings,
        "bench/baseline.sql in bare DuckDB",
        tests=baseline.result["tests"],
        failed_tests=baseline.result["failed_tests"],
        warehouse=str(work / "baseline" / "baseline.duckdb"),
    )
    phases["plain_dbt"], prep["plain_dbt_raw_load"], plain_database = plain_dbt(
        runner, full_dir, ratings
    )
    phases["plain_dbt"]["warehouse"] = str(plain_database)

    with runner.s3_server() as s3_record:
        phases["pipeline"], prep["land_full"], full_env = pipeline_at(
            runner, "full", full_dir, ratings, "bench-full"
        )
        phases["incremental"], full_increment = incremental_at(
            runner, "full", full_env, full_dir, [full_dir / "ratings.csv"], new_full, seed, ratings
        )
        quarter_increment = None
        if quarter:
            phases["pipeline_quarter"], prep["land_quarter"], quarter_env = pipeline_at(
                runner, "quarter", quarter_dir, quarter_rows, "bench-quarter"
            )
            phases["incremental_quarter_same_file"], quarter_increment = incremental_at(
                runner,
                "quarter-same-file",
                quarter_env,
                quarter_dir,
                [quarter_dir / "ratings.csv"],
                new_full,
                seed,
                quarter_rows,
            )
            phases["incremental_quarter_small_file"], _ = incremental_at(
                runner,
                "quarter-small-file",
                quarter_env,
                quarter_dir,
                [quarter_dir / "ratings.csv", quarter_increment],
                new_quarter,
                seed + 1,
                quarter_rows + phases["incremental_quarter_same_file"]["new_pairs"],
            )
        phases["code_location"] = code_location(runner, full_env, code_location_repeats)
    s3_peak = s3_record.get("peak_rss_mib")

    counts = {
        "baseline": runner.phase(
            "counts-baseline", "counts", {"database": phases["baseline"]["warehouse"]}
        ).result["counts"],
        "plain_dbt": runner.phase(
            "counts-plain-dbt", "counts", {"database": str(plain_database)}
        ).result["counts"],
    }
    ratios, targets = assess(phases, s3_peak)
    results = {
        "ratings": ratings,
        "seed": seed,
        "work_dir": str(work),
        "machine": facts,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_s": round(time.perf_counter() - started, 1),
        "phases": phases,
        "preparation": prep,
        "s3_server_peak_rss_mib": round(s3_peak, 1) if s3_peak is not None else None,
        "ratios": ratios,
        "targets": targets,
        "increments": {
            "full": str(full_increment),
            "quarter_same_file": str(quarter_increment) if quarter_increment else None,
        },
        "counts": counts,
    }
    if json_path is not None:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))
    return results


# The table ------------------------------------------------------------------------------------

TABLE_ROWS = (
    ("baseline", "baseline: bench/baseline.sql, bare DuckDB"),
    ("plain_dbt", "plain dbt: dbt build (RAW preloaded)"),
    ("pipeline", "pipeline: raw + dbt (files already in S3)"),
    ("incremental", "incremental: 1% file, full table"),
    ("incremental_quarter_same_file", "incremental: same file, 1/4 table"),
    ("incremental_quarter_small_file", "incremental: 1% file, 1/4 table"),
    ("pipeline_quarter", "pipeline at 1/4 size"),
    ("code_location", "code location import"),
)


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_table(results: dict[str, Any]) -> str:
    """The benchmark as a plain-text table, with ratios, targets and the machine."""
    phases = results["phases"]
    width = max(len(label) for _, label in TABLE_ROWS)
    lines = [
        f"{'phase':<{width}}  {'wall s':>8}  {'peak RSS MiB':>12}  {'rows':>12}  {'rows/s':>12}",
        "-" * (width + 52),
    ]
    for name, label in TABLE_ROWS:
        phase = phases.get(name)
        if phase is None:
            continue
        rows = "-" if phase.get("rows") is None else f"{phase['rows']:,}"
        rate = "-" if phase.get("rows_per_s") is None else f"{phase['rows_per_s']:,}"
        lines.append(
            f"{label:<{width}}  {_number(phase['wall_s'], 2):>8}  "
            f"{_number(phase['peak_rss_mib'], 0):>12}  {rows:>12}  {rate:>12}"
        )
    pipeline = phases["pipeline"]
    prep = results.get("preparation", {})
    steps = pipeline.get("steps", {})
    lines += [
        "",
        "pipeline = the Dagster run of `movielens run` (start to end) less its landing step, the",
        "  files being in S3 already (uploaded beforehand in "
        f"{_number(prep.get('land_full', {}).get('wall_s'))} s, untimed). Its steps: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items())
        + f"; the whole `movielens run` process: {_number(pipeline['process_wall_s'])} s.",
        "incremental = the run the S3 landing sensor requests for one new ratings file "
        "(start to end); rows = the file's rows.",
        f"peak RSS = the largest process of the phase's tree (dbt included); the S3 server "
        f"(moto, own process) peaked at {_number(results['s3_server_peak_rss_mib'], 0)} MiB.",
        "",
        "ratios:",
    ]
    for name, value in results["ratios"].items():
        lines.append(f"  {name.replace('_', ' '):<46} {_number(value, 3)}")
    lines += ["", "targets:"]
    for name, target in results["targets"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        value = target["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        extra = f" ({target['largest']})" if "largest" in target else ""
        lines.append(f"  {name.replace('_', ' '):<28} {target['target']:<28} {shown}{extra}: {met}")
    failing = {
        name: phase["failed_tests"] for name, phase in phases.items() if phase.get("failed_tests")
    }
    if failing:
        lines += ["", "failing dbt tests (the same logic fails the same tests everywhere):"]
        lines += [f"  {name}: {', '.join(names)}" for name, names in failing.items()]
    checks = {
        name: phase["checks"]["failed_names"]
        for name, phase in phases.items()
        if phase.get("checks", {}).get("failed_names")
    }
    if checks:
        lines += ["", "failed Dagster asset checks:"]
        lines += [f"  {name}: {', '.join(names)}" for name, names in checks.items()]
    errors = {name: phase["errors"] for name, phase in phases.items() if phase.get("errors")}
    if errors:
        lines += ["", "run errors (first line):"]
        lines += [f"  {name}: {errors[name][0].splitlines()[0]}" for name in errors]
    machine = results["machine"]
    lines += [
        "",
        f"machine: {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu']}; "
        f"load average at start {machine['load_average']}; Python {machine['python']}, "
        f"DuckDB {machine['duckdb']}, Dagster {machine['dagster']}, dbt {machine['dbt']}",
        f"ratings: {results['ratings']:,}; total benchmark time {results['total_s']:,.0f} s; "
        f"files, DuckDB files and logs kept in {results['work_dir']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
