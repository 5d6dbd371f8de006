"""The child side: one function per phase, run as ``python -m movielens_assets.tools.bench``.

Each phase takes its arguments as a JSON object (``spec``) and returns a JSON object, which
``main`` writes to a file together with the process's peak RSS and that of its children. The
parent (``orchestration.Runner.phase``) starts each phase in its own process so that these peaks
are the phase's own. ``all_phases()`` names every phase: the ones here, ``make-increment``
(``increment.py``) and those of the parts registered in ``parts.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from movielens_assets.datasets import DATASETS
from movielens_assets.tools.bench.dbt_results import dagster_dbt_run_results
from movielens_assets.tools.bench.errors import BenchError
from movielens_assets.tools.bench.increment import phase_make_increment
from movielens_assets.tools.bench.parts import PARTS, Phase
from movielens_assets.tools.bench.paths import BASELINE_SQL, SEED_FILE

if TYPE_CHECKING:
    # Imported by the phases that use it: the others' peak RSS stays free of Dagster.
    import dagster as dg

RAW_SECTION_END = "-- Seed "
"""The header line ending the RAW section of ``bench/baseline.sql``."""


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
    # `_source_file`: the key the land phase gives each file, as the pipeline's RAW holds it
    keys = {
        name: landing_key(name, path.name) for name, path in grouplens_files(Path(spec["data_dir"]))
    }
    error = None
    started = time.perf_counter()
    with duckdb.connect(str(database)) as connection:
        connection.execute("set variable data_dir = ?", [spec["data_dir"]])
        connection.execute("set variable seed_file = ?", [str(SEED_FILE)])
        connection.execute("set variable loaded_at = ?", [datetime.now(UTC).replace(tzinfo=None)])
        for name, key in keys.items():
            connection.execute(f"set variable {name}_key = ?", [key])
        try:
            connection.execute(script)
        except duckdb.InvalidInputException as failure:
            # The script's last statement raises when a test failed, like `dbt build` fails.
            if "baseline tests failed" not in str(failure):
                raise
            error = str(failure)
        # Closing checkpoints the write-ahead log into the file: part of the work, timed (dbt
        # pays it when it exits). The test results are read after the clock stopped.
        connection.close()
        timed = time.perf_counter() - started
    failed: list[str] = []
    tests = 0
    if not spec.get("raw_only", False):
        with duckdb.connect(str(database), read_only=True) as connection:
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
        counts = {}
        for schema, table in tables:
            row = connection.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
            assert row is not None  # count(*) returns one row
            counts[f"{schema}.{table}"] = row[0]
        return counts


def phase_counts(spec: dict[str, Any]) -> dict[str, Any]:
    """Row counts of a warehouse file (read-only, after the phase that wrote it ended)."""
    return {"counts": table_counts(Path(spec["database"]))}


def phase_s3_server(spec: dict[str, Any]) -> dict[str, Any]:
    """Serve the loopback S3 server ``movielens run`` and ``movielens dev`` use (moto's API,
    objects on disk in ``state_dir``) until SIGTERM; the endpoint goes to ``endpoint_file``.

    The server is this phase's child, waited for on SIGTERM, so the phase's peak RSS (which
    counts waited children) is the server's."""
    from movielens_assets.tools.local_s3 import LocalS3Server

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    server = LocalS3Server(Path(spec["state_dir"]))
    endpoint = server.start()
    endpoint_file = Path(spec["endpoint_file"])
    partial = endpoint_file.with_suffix(".partial")
    partial.write_text(endpoint)
    partial.rename(endpoint_file)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return {}


def landing_key(dataset: str, name: str) -> str:
    """The S3 key the bench lands a dataset's file at (the settings' prefix, the layout of the
    pipeline's ``LandingBucket``): the loader's ``_source_file`` for it."""
    from movielens_assets.lib.s3 import dataset_prefix
    from movielens_assets.settings import Settings

    return dataset_prefix(Settings.from_env().prefix, dataset) + name


def land_files(bucket: str, files: Sequence[tuple[str, Path]]) -> dict[str, Any]:
    """Upload ``(dataset, path)`` files to the landing layout of ``bucket``, in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    from movielens_assets.lib import s3 as s3lib

    client = s3lib.client()
    s3lib.ensure_bucket(client, bucket)
    started = time.perf_counter()

    def upload(item: tuple[str, Path]) -> int:
        dataset, path = item
        s3lib.upload(client, path, bucket, landing_key(dataset, path.name))
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


def phase_dbt_parse(spec: dict[str, Any]) -> dict[str, Any]:
    """``dbt parse`` (a full parse: no state yet) into ``spec["target"]``, else into the home's
    ``DBT_TARGET_PATH`` for the profile target the home's runs use.

    That is the parse state a home keeps after its first dbt call (``project.keep_parse_state``),
    so the timed runs parse as every run after a home's first does. dbt discards the state, and
    parses everything again, when the profile's target or connection differs from this one.
    """
    import subprocess

    from movielens_assets.project import DBT_PROJECT_DIR  # sets the home's dbt variables
    from movielens_assets.settings import Settings

    target = spec.get("target") or os.environ["DBT_TARGET_PATH"]
    argv = [
        *(sys.executable, "-m", "movielens_assets.lib.dbt_process", "parse"),
        *("--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)),
        *("--target-path", target, "--log-path", str(Path(target) / "logs")),
        *([] if spec.get("target") else ["--target", Settings.from_env().target]),
    ]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"dbt parse exited with {done.returncode}:\n{done.stdout[-3000:]}")
    return {"timed_s": time.perf_counter() - started}


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


def evaluate_sensor(
    sensor: dg.SensorDefinition, context: dg.SensorEvaluationContext
) -> dg.SensorResult:
    """One tick of ``sensor``, which returns a ``SensorResult`` (as the landing sensor does)."""
    import dagster as dg

    result = sensor(context)
    if not isinstance(result, dg.SensorResult):
        raise BenchError(f"{sensor.name} returned {type(result).__name__}, not a SensorResult")
    return result


def phase_incremental(spec: dict[str, Any]) -> dict[str, Any]:
    """Land one more ratings file; tick the landing sensor; execute the run it requests.

    The sensor's cursor is taken before the file lands, so the tick sees exactly that file. The
    requested run executes in-process (as ``movielens run`` does); the daemon would launch it
    in a new process instead. The benchmark counts the run, start to end; the tick and the run
    together are kept as ``tick_and_run_s``; landing the file is not timed.
    """
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
    with contextlib.redirect_stdout(sys.stderr):
        defs = build_definitions()
        sensor = defs.resolve_sensor_def(SENSOR_NAME)
        resources = {"s3": (defs.resources or {})["s3"]}
        with dg.DagsterInstance.get() as instance:
            before = evaluate_sensor(
                sensor,
                dg.build_sensor_context(instance=instance, resources=resources, definitions=defs),
            )
            landed = land_files(settings.bucket, [("ratings", Path(spec["file"]))])
            started = time.perf_counter()
            tick = evaluate_sensor(
                sensor,
                dg.build_sensor_context(
                    instance=instance, cursor=before.cursor, resources=resources, definitions=defs
                ),
            )
            requests = tick.run_requests or []
            if len(requests) != 1:
                raise BenchError(f"the sensor requested {len(requests)} runs, not 1")
            request = requests[0]
            job_name = request.job_name or sensor.job_name
            if job_name is None:
                raise BenchError(f"the run {SENSOR_NAME} requested names no job")
            job = defs.resolve_job_def(job_name)
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


CORE_PHASES: dict[str, Phase] = {
    "generate": phase_generate,
    "baseline": phase_baseline,
    "counts": phase_counts,
    "s3-server": phase_s3_server,
    "land": phase_land,
    "dbt-parse": phase_dbt_parse,
    "pipeline": phase_pipeline,
    "make-increment": phase_make_increment,
    "incremental": phase_incremental,
}
"""The phases the baseline, plain-dbt, pipeline and incremental measurements use."""


def all_phases() -> dict[str, Phase]:
    """Every phase by name: the core ones and those of each registered part."""
    phases = dict(CORE_PHASES)
    for part in PARTS:
        for name, function in part.phases.items():
            if name in phases:
                raise BenchError(f"bench part {part.name!r} reuses the phase name {name!r}")
            phases[name] = function
    return phases


def max_rss_mib(who: int) -> float:
    """Peak RSS in MiB of this process (``RUSAGE_SELF``) or its waited-for children."""
    import resource

    return resource.getrusage(who).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    """Run one phase: ``python -m movielens_assets.tools.bench <phase> <spec-json> <out-json>``."""
    import resource

    phases = all_phases()
    parser = argparse.ArgumentParser(prog="python -m movielens_assets.tools.bench")
    parser.add_argument("phase", choices=sorted(phases))
    parser.add_argument("spec", help="the phase's arguments as a JSON object")
    parser.add_argument("out", help="file to write the phase's result to, as JSON")
    args = parser.parse_args(argv)
    result = phases[args.phase](json.loads(args.spec))
    result["self_peak_rss_mib"] = max_rss_mib(resource.RUSAGE_SELF)
    result["children_peak_rss_mib"] = max_rss_mib(resource.RUSAGE_CHILDREN)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0
