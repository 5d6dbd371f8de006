"""The project's only uses of Dagster and dagster-dbt internals, each pinned by a test.

Everything else uses public APIs. Each function here says which internal it reads and why no
public API does the job; ``movielens_assets_tests/unit/test_dagster_internals.py`` fails when
an upgrade changes one of them, so an upgrade breaks a test, not a run.
"""

import importlib.metadata
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version


def job_asset_keys(job: dg.JobDefinition) -> set[dg.AssetKey]:
    """The asset keys a job materializes (``JobDefinition.asset_layer``: no public equivalent)."""
    return set(job.asset_layer.executable_asset_keys)


def job_check_count(job: dg.JobDefinition) -> int:
    """How many asset checks a job's asset graph holds (``asset_layer.asset_graph``)."""
    return len(job.asset_layer.asset_graph.asset_check_keys)


def job_assets_defs(job: dg.JobDefinition) -> Sequence[dg.AssetsDefinition]:
    """The assets definitions of a job's asset graph (``asset_layer.asset_graph``)."""
    return job.asset_layer.asset_graph.assets_defs


class DbtCliWithInstalledVersion(DbtCliResource):
    """dagster-dbt's dbt resource, reading dbt-core's version from the installed package.

    dagster-dbt asks the dbt executable for its version (the private cached property
    ``DbtCliResource._cli_version``) once per resource instance, i.e. once per step: a second
    dbt process costing ~2 s. When the executable is the dbt-core installed beside this Python
    (``installed_dbt``), its version is read from the package's metadata instead.
    """

    installed_dbt: str | None = None
    """The path of the dbt that belongs to this Python's dbt-core package, if any."""

    @cached_property
    def _cli_version(self) -> version.Version:
        if self.installed_dbt and Path(self.dbt_executable) == Path(self.installed_dbt):
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version
