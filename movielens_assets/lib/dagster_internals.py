"""The project's only uses of Dagster and dagster-dbt internals, each pinned by a test.

Everything else uses public APIs. Each function here says which internal it reads and why no
public API does the job; ``movielens_assets_tests/unit/test_dagster_internals.py`` fails when
an upgrade changes one of them, so an upgrade breaks a test, not a run.
"""

import importlib.metadata
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets
from packaging import version

RESUME_RETRY_TAG = "dagster/is_resume_retry"
"""The tag Dagster puts on a run that re-executes another from failure (the UI's "From failure",
run retries with ``FROM_FAILURE``): ``dagster._core.storage.tags.RESUME_RETRY_TAG``, which no
public API exposes."""


def dbt_manifest_and_translator(
    assets_def: dg.AssetsDefinition,
) -> tuple[Mapping[str, Any], DagsterDbtTranslator]:
    """The dbt manifest and translator a ``@dbt_assets`` definition was built from
    (``dagster_dbt.asset_utils.get_manifest_and_translator_from_dbt_assets``, not exported by
    ``dagster_dbt``)."""
    manifest, translator, _ = get_manifest_and_translator_from_dbt_assets([assets_def])
    return manifest, translator


def job_asset_keys(job: dg.JobDefinition) -> set[dg.AssetKey]:
    """The asset keys a job materializes (``JobDefinition.asset_layer``: no public equivalent)."""
    return set(job.asset_layer.executable_asset_keys)


def job_check_count(job: dg.JobDefinition) -> int:
    """How many asset checks a job's asset graph holds (``asset_layer.asset_graph``)."""
    return len(job.asset_layer.asset_graph.asset_check_keys)


def job_assets_defs(job: dg.JobDefinition) -> Sequence[dg.AssetsDefinition]:
    """The assets definitions of a job's asset graph (``asset_layer.asset_graph``)."""
    return job.asset_layer.asset_graph.assets_defs


def resolve_selection(
    selection: dg.AssetSelection, assets_defs: Iterable[dg.AssetsDefinition]
) -> set[dg.AssetKey]:
    """The keys an asset selection picks among ``assets_defs``.

    ``AssetSelection.resolve`` is documented nowhere as public, although its class is; a
    sensor needs it to expand "downstream of these RAW assets" into the keys of a run request.
    """
    return set(selection.resolve(list(assets_defs)))


def own_pool_limits(instance: dg.DagsterInstance) -> dict[str, int]:
    """The pools that have a limit of their own (not taken from ``default_limit``) and their
    limits: ``EventLogStorage.get_pool_limits()``, whose ``from_default`` says which; the UI's
    pools page reads the same."""
    return {
        pool.name: pool.limit
        for pool in instance.event_log_storage.get_pool_limits()
        if not pool.from_default
    }


def set_pool_limit(instance: dg.DagsterInstance, pool: str, limit: int) -> None:
    """Give ``pool`` a limit of its own: what ``dagster instance concurrency set`` calls
    (``EventLogStorage.set_concurrency_slots``)."""
    instance.event_log_storage.set_concurrency_slots(pool, limit)


def default_pool_limit(instance: dg.DagsterInstance) -> int | None:
    """``concurrency.pools.default_limit`` of the instance's ``dagster.yaml``, as Dagster read it
    (``DagsterInstance.global_op_concurrency_default_limit``), or None when it has none."""
    return instance.global_op_concurrency_default_limit


def has_pool_tables(instance: dg.DagsterInstance) -> bool:
    """Whether the instance's storage holds pool limits
    (``EventLogStorage.supports_global_concurrency_limits``)."""
    return instance.event_log_storage.supports_global_concurrency_limits


class StreamingDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt resource without two per-step costs the streaming dbt step does not need.

    Both are private members of ``DbtCliResource``, called by its ``cli()`` on every step:

    - ``_cli_version`` (a cached property, once per resource instance, i.e. per step) asks the dbt
      executable for its version: a second dbt process costing ~2 s. When the executable is the
      dbt-core installed beside this Python (``installed_dbt``), the package's metadata says it.
    - ``_initialize_dbt_core_adapter`` loads dbt's profile, project and macros into the run
      worker (~1 s) for an adapter that only ``fetch_row_counts()`` /
      ``fetch_column_metadata()`` use. The dbt step reads row counts and columns from dbt's own
      output instead (``defs/dbt/events.py``), so no adapter is made, and the run worker holds
      no handle on the warehouse (DuckDB admits one writer process).
    """

    installed_dbt: str | None = None
    """The path of the dbt that belongs to this Python's dbt-core package, if any."""

    def __init__(
        self, project_dir: str | Path | DbtProject, installed_dbt: str | None = None, **kwargs: Any
    ) -> None:
        # dagster-dbt's own __init__ takes a DbtProject; the resource's field is a str.
        super().__init__(project_dir=project_dir, installed_dbt=installed_dbt, **kwargs)

    @cached_property
    def _cli_version(self) -> version.Version:
        if self.installed_dbt and Path(self.dbt_executable) == Path(self.installed_dbt):
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None  # the invocation's adapter: None, as dagster-dbt allows
