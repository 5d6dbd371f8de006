"""The dbt project ``movielens_dbt`` as assets: staging, dimensions, facts, marts, seed, snapshot.

Every dbt test becomes an asset check on the model it tests (blocking: a failed test skips the
models downstream of it). dbt sources map onto the ``raw/raw_<dataset>`` assets; keys,
groups and freshness come from ``translator.py``.
"""

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets
from pydantic import Field

from movielens_assets.defs.dbt.events import LiveDbtEvents
from movielens_assets.defs.dbt.failing_rows import with_failing_rows
from movielens_assets.defs.dbt.metadata import load_watermark, model_metadata, model_relations
from movielens_assets.defs.dbt.retry import done_before, retry_args
from movielens_assets.defs.dbt.test_scope import TESTS_SINCE_ENV, tests_since
from movielens_assets.defs.dbt.translator import MovielensTranslator
from movielens_assets.lib.dagster_internals import dbt_manifest_and_translator
from movielens_assets.lib.redact import redacted_errors
from movielens_assets.lib.tether import DBT_STOP_GRACE_SECONDS, end_with_spawning_process
from movielens_assets.project import keep_parse_state, movielens_project
from movielens_assets.settings import Settings
from movielens_assets.warehouse.base import Warehouse

DBT_STOP_SECONDS = DBT_STOP_GRACE_SECONDS + 5
"""How long an interrupted dbt gets before the step kills it (``movielens-dbt`` acts sooner)."""


class DbtBuildConfig(dg.Config):
    """Options of a dbt build launched from Dagster (also on the launchpad)."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild incremental models and seeds from scratch (dbt --full-refresh).",
    )


def stop_dbt(process: subprocess.Popen, timeout: float = DBT_STOP_SECONDS) -> None:
    """Interrupt dbt (it cancels its queries) unless it has ended; kill it after ``timeout``.

    dagster-dbt forwards the run's interrupt itself when it arrives while it reads dbt's output,
    and ``movielens-dbt`` kills a dbt that has not stopped seconds later; this covers an
    interrupt that arrived anywhere else.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_stopped_early(context: dg.AssetExecutionContext, built: list[str]) -> None:
    """Say in the run's log what dbt built before it was stopped (its materializations were
    streamed as dbt finished each model, so the run's record already holds them)."""
    selected = len(context.selected_asset_keys)
    names = [node.rsplit(".", 1)[-1] for node in built]
    context.log.warning(
        f"dbt was stopped before it finished: it built {len(built)} of {selected} selected "
        f"assets before it stopped: {', '.join(names) or 'none'}."
    )


def build_dbt_assets(
    settings: Settings, project: DbtProject = movielens_project
) -> dg.AssetsDefinition:
    """The dbt project's assets in the target's dbt pool (``Settings.pools``); ``project``:
    another copy of it, for tests."""

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=MovielensTranslator(settings),
        pool=settings.pools.dbt,
    )
    def movielens_dbt_models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        warehouse: Warehouse,
        config: DbtBuildConfig,
    ) -> Iterator[Any]:
        """``dbt build`` of the selected models, seed, snapshot and tests.

        Each model's materialization (with its row count and columns) and each passed test's
        check result reach Dagster as dbt finishes the node (``events.py``). Once dbt has
        exited: the failed tests' check results with a sample of their failing rows, then an
        observation per model with the metadata read from the warehouse (``metadata.py``).
        Re-executed from failure, it builds only what the failed run did not (``retry.py``).
        """
        # dbt's errors and the warehouse's are stored with the run: no password in them.
        with redacted_errors():
            os.environ.update(warehouse.dbt_env(context.run.run_id))
            relations = model_relations(context)
            with warehouse.reading():  # closed before dbt opens the warehouse
                watermarks = {
                    key: load_watermark(warehouse, relation)
                    for key, relation in relations.items()
                    if relation.incremental
                }
            since = tests_since(context.run.tags, config.full_refresh, watermarks)
            os.environ[TESTS_SINCE_ENV] = since
            if since:
                context.log.info(
                    f"Scoped primary-key tests read the rows loaded after {since} (a sensor run "
                    "on built tables); the daily run and runs started by hand read whole tables."
                )
            done = done_before(context.instance, context.run)
            if done:
                context.log.info(
                    f"Re-executing run {context.run.parent_run_id} from failure: leaving out the "
                    f"{len(done)} dbt nodes it (or a run before it) built or tested already."
                )
            manifest, _ = dbt_manifest_and_translator(context.assets_def)
            checks = [key.name for key in context.selected_asset_check_keys]
            # dbt unit tests are a development check (movielens_assets_tests runs them).
            args = [
                "build",
                *("--exclude-resource-type", "unit_test"),
                *(["--full-refresh"] if config.full_refresh else []),
                *retry_args(manifest, done, checks),
            ]
            # A step process of the multiprocess executor ends with its run worker (and so
            # does its dbt): see lib/tether.py.
            end_with_spawning_process()
            invocation = dbt.cli(args, context=context, raise_on_error=False)
            live = LiveDbtEvents(invocation, context)
            try:
                try:
                    yield from live
                except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt, GeneratorExit):
                    # The run is being terminated: dbt must stop now. (The interrupt may reach
                    # Dagster while it stores an event this step yielded: it then closes this
                    # generator, GeneratorExit.)
                    stop_dbt(invocation.process)
                    log_stopped_early(context, live.built)
                    raise
            finally:
                keep_parse_state(invocation.target_path)
            # dbt has exited: the warehouse can be read (on DuckDB, only now).
            with warehouse.reading():
                yield from with_failing_rows(
                    live.held, invocation.target_path, warehouse, context.log
                )
                built = set(live.built)
                for key, relation in relations.items():
                    if relation.unique_id in built:
                        extra = model_metadata(warehouse, relation, watermarks.get(key))
                        if extra:
                            yield dg.AssetObservation(asset_key=key, metadata=extra)
            failure = invocation.get_error()
            if failure is not None:
                raise failure

    return movielens_dbt_models


@dg.definitions
def defs() -> dg.Definitions:
    """The dbt project's assets, configured from the environment."""
    return dg.Definitions(assets=[build_dbt_assets(Settings.from_env())])
