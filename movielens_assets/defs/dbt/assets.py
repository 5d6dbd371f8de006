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
from dagster_dbt import DbtCliResource, dbt_assets
from dagster_dbt.core.dbt_event_iterator import DbtEventIterator
from pydantic import Field

from movielens_assets.defs.dbt.failing_rows import with_failing_rows
from movielens_assets.defs.dbt.metadata import load_watermark, model_metadata, model_relations
from movielens_assets.defs.dbt.translator import MovielensTranslator
from movielens_assets.lib.redact import redacted_errors
from movielens_assets.lib.tether import DBT_STOP_GRACE_SECONDS
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


def stopped_early(context: dg.AssetExecutionContext, streamed: list[Any]) -> Iterator[Any]:
    """What dbt built before it was stopped: its outputs (materializations), and one line."""
    outputs = [event for event in streamed if isinstance(event, dg.Output)]
    built = [context.asset_key_for_output(event.output_name).to_user_string() for event in outputs]
    selected = len(context.selected_asset_keys)
    context.log.warning(
        f"dbt was stopped before it finished: it built {len(built)} of {selected} selected "
        f"assets before it stopped: {', '.join(built) or 'none'}."
    )
    yield from outputs


def build_dbt_assets(settings: Settings) -> dg.AssetsDefinition:
    """The dbt project's assets."""

    @dbt_assets(
        manifest=movielens_project.manifest_path,
        project=movielens_project,
        dagster_dbt_translator=MovielensTranslator(settings),
    )
    def movielens_dbt_models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        warehouse: Warehouse,
        config: DbtBuildConfig,
    ) -> Iterator[Any]:
        """``dbt build`` of the selected models, seed, snapshot and tests."""
        # dbt's errors and the warehouse's are stored with the run: no password in them.
        with redacted_errors():
            os.environ.update(warehouse.dbt_env(context.run.run_id))
            relations = model_relations(context)
            watermarks = {
                key: load_watermark(warehouse, relation)
                for key, relation in relations.items()
                if relation.incremental
            }
            # dbt unit tests are a development check (movielens_assets_tests runs them).
            args = ["build", "--exclude-resource-type", "unit_test"]
            args += ["--full-refresh"] if config.full_refresh else []
            # Buffered: on DuckDB, metadata can only be read once dbt has let go of the file. A
            # failed dbt test fails the step after the events of everything dbt did: yield
            # those first, so the run still shows what was built and which checks failed.
            invocation = dbt.cli(args, context=context, raise_on_error=False)
            streamed: list[Any] = []
            try:
                # dbt's events first, read as dbt writes them. Only then the row counts and
                # column metadata: dagster-dbt's fetchers run the stream through Dagster's imap,
                # which spins on a core while it waits for events (half of a 2-core machine,
                # all the dbt run).
                try:
                    for event in invocation.stream():
                        streamed.append(event)
                except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
                    # The run is being terminated: dbt must stop now, and the run's record
                    # says what it had built (those tables are there).
                    stop_dbt(invocation.process)
                    yield from stopped_early(context, streamed)
                    raise
                built = DbtEventIterator(iter(streamed), invocation)
                events = list(built.fetch_row_counts().fetch_column_metadata())
                keep_parse_state(invocation.target_path)
            finally:
                # Row counts are queried through dbt's adapter in this process; let it go of the
                # warehouse so the next process (dbt compile, the next run) can open it.
                if invocation.adapter is not None:
                    invocation.adapter.cleanup_connections()
                    warehouse.release_dbt_adapter(invocation.adapter)
            # A failed test's check shows a sample of its rows (queried now, dbt being done).
            events = with_failing_rows(events, invocation.target_path, warehouse, context.log)
            for event in events:
                key = (
                    context.asset_key_for_output(event.output_name)
                    if isinstance(event, dg.Output)
                    else None
                )
                if key in relations:
                    extra = model_metadata(warehouse, relations[key], watermarks.get(key))
                    event = event.with_metadata({**event.metadata, **extra})
                yield event
            failure = invocation.get_error()
            if failure is not None:
                raise failure

    return movielens_dbt_models


@dg.definitions
def defs() -> dg.Definitions:
    """The dbt project's assets, configured from the environment."""
    return dg.Definitions(assets=[build_dbt_assets(Settings.from_env())])
