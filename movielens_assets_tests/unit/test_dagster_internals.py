"""The Dagster and dagster-dbt internals ``lib/dagster_internals.py`` relies on still exist.

Each test fails when an upgrade renames or changes one of them, before a run does.
"""

import inspect
from functools import cached_property

import dagster as dg
from dagster_dbt import DbtCliResource

from movielens_assets.lib.dagster_internals import (
    DbtCliWithInstalledVersion,
    job_asset_keys,
    job_assets_defs,
    job_check_count,
)


@dg.asset
def first() -> None:
    """A first asset."""


@dg.asset(deps=[first], check_specs=[dg.AssetCheckSpec("positive", asset="second")])
def second() -> dg.MaterializeResult:
    """A second asset with a check."""
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])


def test_a_jobs_asset_layer_lists_its_assets_checks_and_definitions():
    defs = dg.Definitions(assets=[first, second], jobs=[dg.define_asset_job("both", "*")])
    job = defs.resolve_job_def("both")

    assert job_asset_keys(job) == {dg.AssetKey("first"), dg.AssetKey("second")}
    assert job_check_count(job) == 1
    assert {assets_def.node_def.name for assets_def in job_assets_defs(job)} == {"first", "second"}


def test_dagster_dbt_still_caches_the_dbt_version_in_a_private_property():
    assert isinstance(inspect.getattr_static(DbtCliResource, "_cli_version"), cached_property)
    assert issubclass(DbtCliWithInstalledVersion, DbtCliResource)
