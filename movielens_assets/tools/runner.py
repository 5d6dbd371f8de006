"""``movielens run``: materialize every asset once, evaluate every check, and summarize.

The run is a real Dagster run of the ``movielens_pipeline`` job, recorded in the instance under
``$MOVIELENS_HOME/dagster`` so the UI shows it afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from movielens_assets.lib.dagster_internals import job_asset_keys, job_assets_defs, job_check_count
from movielens_assets.settings import Settings

STAGES = {"landing_files": "landing", "raw_tables": "raw", "movielens_dbt_models": "dbt"}
"""Step (op) name -> the stage it is reported under."""

DAGSTER_YAML = """\
# Written by `movielens` (rewritten on every start): the Dagster instance of local runs.
# deploy/dagster.yaml is the production one (Postgres); the run settings below are the same.
telemetry:
  enabled: false
# Runs queue in the daemon; the warehouse's single writer is a pool, not one run at a time:
# every step that opens the DuckDB file is in pool `duckdb_warehouse`, and a pool without a
# limit of its own gets default_limit 1. Steps that do not touch the warehouse run beside it.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    # The daemon looks at the queue every second (Dagster's default is 5 s): on a laptop the
    # run a sensor requests starts up to 4 s sooner (deploy/dagster.yaml keeps the default).
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1
    granularity: op
# A run whose worker dies is marked failed (the code server sees its process exit; the start
# timeout catches a worker that never started) and its pool slots are freed soon after.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 5
  free_slots_after_run_end_seconds: 5
# ...and retried from the failed step. A run that failed in a step (a blocking check failed, a
# file was rejected) is not retried: it would fail the same way.
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
retention:
  sensor:
    purge_after_days:
      skipped: 1
      success: 30
      failure: 30
  schedule:
    purge_after_days:
      skipped: 7
      success: 90
      failure: 90
"""


@dataclass
class AssetLine:
    """One asset's outcome in a run."""

    key: str
    status: str
    rows: int | None = None


@dataclass
class Summary:
    """What ``movielens run`` prints and writes with ``--summary-json``."""

    run_id: str
    success: bool
    stages: dict[str, float] = field(default_factory=dict)
    assets: list[AssetLine] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    top_movies: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        """The summary as JSON."""
        return json.dumps(asdict(self), indent=2, default=str)


def prepare_instance(settings: Settings) -> None:
    """Point ``DAGSTER_HOME`` at ``$MOVIELENS_HOME/dagster`` and create it if needed.

    The instance's storage is created here, once, so that the webserver and the daemon
    started together do not race to create the same SQLite tables.
    """
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    (settings.dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    with dg.DagsterInstance.get():
        pass


LAUNCHER_PID_TAG = "movielens/launcher_pid"
LAUNCHER_HOST_TAG = "movielens/launcher_host"
IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def launcher_tags() -> dict[str, str]:
    """Tags naming the process that runs an in-process run (``movielens run``)."""
    return {LAUNCHER_PID_TAG: str(os.getpid()), LAUNCHER_HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process runs whose ``movielens run`` process died (SIGKILL, OOM)
    while the instance still shows them in progress, and free the pool slots they held.

    A run of the daemon has a code server watching its process; an in-process run has nobody,
    and a ``duckdb_warehouse`` slot it left claimed would hold every later warehouse step.
    Returns the run ids it failed.
    """
    abandoned = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        pid = run.tags.get(LAUNCHER_PID_TAG, "")
        if not pid.isdigit() or run.tags.get(LAUNCHER_HOST_TAG) != socket.gethostname():
            continue
        if _alive(int(pid)):
            continue
        instance.report_run_failed(
            run, f"The `movielens run` process (pid {pid}) ended without finishing this run."
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        abandoned.append(run.run_id)
    return abandoned


def ensure_manifest(refresh: bool = False) -> Path:
    """Parse the dbt project if its manifest is missing, or always with ``refresh``.

    Never at import time: the ``movielens`` command calls this before loading definitions.
    """
    from movielens_assets.project import movielens_project

    if refresh or not movielens_project.manifest_path.exists():
        movielens_project.preparer.prepare(movielens_project)
    return movielens_project.manifest_path


def run_config(data_dir: Path | None, full_refresh: bool) -> dict[str, Any]:
    """The run config of the pipeline job for these options."""
    return {
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
        "ops": {
            "landing_files": {"config": {"data_dir": str(data_dir) if data_dir else None}},
            "movielens_dbt_models": {"config": {"full_refresh": full_refresh}},
        },
    }


def stage_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds per stage, from the step start and end events of the run."""
    starts: dict[str, float] = {}
    seconds = {stage: 0.0 for stage in STAGES.values()}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key not in STAGES:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif (
            event.event_type
            in (
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
            )
            and event.step_key in starts
        ):
            seconds[STAGES[event.step_key]] += round(entry.timestamp - starts[event.step_key], 2)
    return seconds


def root_cause(failure: dg.DagsterEvent) -> str:
    """The innermost error message of a step failure (not Dagster's wrapper)."""
    error = failure.step_failure_data.error
    if error is None:
        return "unknown error"
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def summarize(result: dg.ExecuteInProcessResult, job: dg.JobDefinition) -> Summary:
    """Assets, checks and errors of a finished run."""
    summary = Summary(run_id=result.run_id, success=result.success)
    materialized = {
        event.asset_key: event.materialization
        for event in result.get_asset_materialization_events()
    }
    for key in sorted(job_asset_keys(job), key=lambda k: k.to_user_string()):
        materialization = materialized.get(key)
        rows = None
        if materialization is not None:
            value = materialization.metadata.get("dagster/row_count")
            # Every asset records its row count as an int (dagster-dbt's fetch_row_counts too).
            rows = value.value if isinstance(value, dg.IntMetadataValue) else None
        summary.assets.append(
            AssetLine(
                key.to_user_string(),
                "materialized" if materialization else "not materialized",
                rows,
            )
        )
    evaluations = result.get_asset_check_evaluations()
    failed = sorted(
        f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        for evaluation in evaluations
        if not evaluation.passed
    )
    summary.checks = {
        "passed": sum(1 for evaluation in evaluations if evaluation.passed),
        "failed": len(failed),
        "failed_names": failed,
        "not_evaluated": max(job_check_count(job) - len(evaluations), 0),
    }
    for failure in result.get_step_failure_events():
        summary.errors.append(f"step {failure.step_key} failed: {root_cause(failure)}")
    return summary


def top_movies(settings: Settings, warehouse: Any, limit: int = 10) -> list[dict[str, Any]]:
    """The first rows of ``analyses/movie_analysis.sql``, compiled by dbt and run here."""
    from movielens_assets.project import keep_parse_state
    from movielens_assets.resources import dbt_resource

    os.environ.update(warehouse.dbt_env())
    dbt = dbt_resource(settings)
    invocation = dbt.cli(["compile", "--select", "movie_analysis", "--quiet"], raise_on_error=True)
    invocation.wait()
    keep_parse_state(invocation.target_path)
    compiled = next(invocation.target_path.glob("compiled/**/movie_analysis.sql"))
    sql = compiled.read_text().strip().rstrip(";")
    rows = warehouse.query(f"{sql}\nlimit {int(limit)}")
    return [
        {"movie_title": title, "average_rating": round(float(average), 3), "total_ratings": total}
        for title, average, total in rows
    ]


PROGRESS_NOUNS = {
    "landing": "datasets in S3",
    "raw": "datasets loaded",
    "dbt": "models, seeds and snapshots built",
}
"""What a stage's progress line counts."""


class RunProgress:
    """A run's step, asset and check events as short progress lines (``raw: 3/6 datasets
    loaded``).

    ``totals`` is how many assets each stage materializes (``{"raw": 6, ...}``).
    """

    def __init__(self, totals: Mapping[str, int]) -> None:
        self.totals = dict(totals)
        self.assets: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.failed_checks: Counter[str] = Counter()
        self.started: dict[str, float] = {}

    def update(self, stage: str, kind: str, at: float, passed: bool = True) -> str | None:
        """The line for one event of ``stage`` at time ``at``, if it is worth one.

        ``kind`` is ``start``, ``asset`` (one materialized), ``check`` (one evaluated; no line
        of its own, counted in the next) or ``end`` (``passed`` False: the step failed).
        """
        if kind == "start":
            self.started[stage] = at
            return f"{stage}: started"
        if kind == "check":
            self.checks[stage] += 1
            self.failed_checks[stage] += 0 if passed else 1
            return None
        if kind == "asset":
            self.assets[stage] += 1
        count = f"{self.assets[stage]}/{self.totals.get(stage, 0)} {PROGRESS_NOUNS[stage]}"
        if kind == "asset":
            return f"{stage}: {count}{self._checks(stage)}"
        if kind == "end":
            seconds = at - self.started.get(stage, at)
            outcome = "done" if passed else "FAILED"
            return f"{stage}: {outcome} in {seconds:.1f} s, {count}{self._checks(stage)}"
        return None

    def _checks(self, stage: str) -> str:
        if not self.checks[stage]:
            return ""
        failed = self.failed_checks[stage]
        return f", {self.checks[stage]} checks" + (f" ({failed} failed)" if failed else "")


def stage_totals(job: dg.JobDefinition) -> dict[str, int]:
    """How many assets each stage of ``job`` materializes."""
    return {
        STAGES[assets_def.node_def.name]: len(assets_def.keys)
        for assets_def in job_assets_defs(job)
        if assets_def.is_executable and assets_def.node_def.name in STAGES
    }


def progress_listener(progress: RunProgress, emit: Callable[[str], None]) -> Callable[[Any], None]:
    """An instance event listener that emits ``progress``' lines for a run's events."""
    kinds = {
        dg.DagsterEventType.STEP_START: "start",
        dg.DagsterEventType.ASSET_MATERIALIZATION: "asset",
        dg.DagsterEventType.ASSET_CHECK_EVALUATION: "check",
        dg.DagsterEventType.STEP_SUCCESS: "end",
        dg.DagsterEventType.STEP_FAILURE: "end",
    }

    def listen(entry: Any) -> None:
        event = entry.dagster_event
        if event is None or event.step_key not in STAGES or event.event_type not in kinds:
            return
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            passed = event.event_specific_data.passed
        else:
            passed = event.event_type != dg.DagsterEventType.STEP_FAILURE
        line = progress.update(
            STAGES[event.step_key], kinds[event.event_type], entry.timestamp, passed
        )
        if line:
            emit(line)

    return listen


def run_pipeline(
    settings: Settings,
    data_dir: Path | None = None,
    full_refresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Summary:
    """Materialize every asset and evaluate every check in one recorded Dagster run.

    ``progress`` receives a line per stage start and end and per materialized asset.
    """
    prepare_instance(settings)
    ensure_manifest()
    from movielens_assets.definitions import build_definitions
    from movielens_assets.tools.local_s3 import s3_endpoint
    from movielens_assets.tools.sample import sample_dir

    if data_dir is None and settings.data_dir is None:
        data_dir = sample_dir(settings)

    # Progress (Dagster's and dbt's logs) goes to stderr; stdout carries only the summary.
    with contextlib.redirect_stdout(sys.stderr), s3_endpoint(settings):
        defs = build_definitions()
        job = defs.resolve_job_def("movielens_pipeline")
        with dg.DagsterInstance.get() as instance:
            abandoned = fail_abandoned_runs(instance)
            if abandoned and progress is not None:
                progress(f"marked failed: {', '.join(abandoned)} (a killed `movielens run`)")
            run_id = str(uuid.uuid4())
            if progress is not None:
                listener = progress_listener(RunProgress(stage_totals(job)), progress)
                instance.add_event_listener(run_id, listener)
            result = job.execute_in_process(
                run_config=run_config(data_dir, full_refresh),
                instance=instance,
                raise_on_error=False,
                run_id=run_id,
                tags=launcher_tags(),
            )
            summary = summarize(result, job)
            summary.stages = stage_seconds(instance, result.run_id)
        if summary.success:
            summary.top_movies = top_movies(settings, (defs.resources or {})["warehouse"])
    return summary


def format_summary(summary: Summary) -> str:
    """The human-readable summary ``movielens run`` prints."""
    lines = [f"Run {summary.run_id}: {'SUCCESS' if summary.success else 'FAILURE'}", ""]
    lines.append(
        "Time per stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary.stages.items())
    )
    lines.append("")
    width = max((len(asset.key) for asset in summary.assets), default=10)
    lines.append(f"{'asset':<{width}}  {'status':<16}  {'rows':>12}")
    for asset in summary.assets:
        rows = f"{asset.rows:,}" if asset.rows is not None else "-"
        lines.append(f"{asset.key:<{width}}  {asset.status:<16}  {rows:>12}")
    checks = summary.checks
    lines += [
        "",
        f"Checks: {checks['passed']} passed, {checks['failed']} failed"
        + (f", {checks['not_evaluated']} not evaluated" if checks.get("not_evaluated") else ""),
    ]
    lines += [f"  FAILED {name}" for name in checks["failed_names"]]
    if summary.errors:
        lines += ["", "Errors:"] + [f"  {error}" for error in summary.errors]
    if summary.top_movies:
        lines += ["", "Top 10 movies (analyses/movie_analysis.sql):"]
        for rank, movie in enumerate(summary.top_movies, start=1):
            lines.append(
                f"  {rank:>2}. {movie['movie_title']}  avg {movie['average_rating']:.2f}"
                f" over {movie['total_ratings']:,} ratings"
            )
    return "\n".join(lines)
