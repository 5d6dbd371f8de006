"""The Dagster and dagster-dbt internals ``lib/dagster_internals.py`` relies on still exist.

Each test fails when an upgrade renames or changes one of them, before a run does.
"""

import inspect
import typing
from functools import cached_property

import dagster as dg
from dagster_dbt import DbtCliInvocation, DbtCliResource

from movielens_assets.lib.dagster_internals import (
    RESUME_RETRY_TAG,
    StreamingDbtCliResource,
    dbt_manifest_and_translator,
    default_pool_limit,
    has_pool_tables,
    job_asset_keys,
    job_assets_defs,
    job_check_count,
    own_pool_limits,
    resolve_selection,
    set_pool_limit,
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


def test_the_instance_still_tells_own_pool_limits_from_default_ones():
    """A SQLite test instance (PostgreSQL: integration/test_instance_pools.py): a pool created by
    a claim takes ``default_limit`` and is not listed as its own; one set is."""
    pools = {"concurrency": {"pools": {"default_limit": 2}}}
    with dg.instance_for_test(overrides=pools) as instance:
        assert has_pool_tables(instance)
        assert default_pool_limit(instance) == 2
        instance.event_log_storage.initialize_concurrency_limit_to_default("lazy")
        set_pool_limit(instance, "set", 3)
        assert own_pool_limits(instance) == {"set": 3}
        assert {pool.name for pool in instance.event_log_storage.get_pool_limits()} == {
            "lazy",
            "set",
        }


def test_dagster_dbt_still_caches_the_dbt_version_in_a_private_property():
    assert isinstance(inspect.getattr_static(DbtCliResource, "_cli_version"), cached_property)
    assert issubclass(StreamingDbtCliResource, DbtCliResource)


def test_dagster_dbt_still_makes_its_in_process_adapter_in_a_private_method_cli_calls():
    """``cli()`` calls ``_initialize_dbt_core_adapter(args)`` and hands its result (which may be
    None) to the invocation; the override returns None."""
    assert "self._initialize_dbt_core_adapter(args)" in inspect.getsource(DbtCliResource.cli)
    parameters = inspect.signature(DbtCliResource._initialize_dbt_core_adapter).parameters
    assert list(parameters) == ["self", "args"]
    invocation_run = inspect.signature(DbtCliInvocation.run).parameters
    assert type(None) in typing.get_args(invocation_run["adapter"].annotation)


def test_an_asset_selection_resolves_to_keys_among_assets_definitions():
    downstream = dg.AssetSelection.assets(first).downstream()
    assert resolve_selection(downstream, [first, second]) == {
        dg.AssetKey("first"),
        dg.AssetKey("second"),
    }
    assert resolve_selection(dg.AssetSelection.assets(second).upstream(), [first, second]) == {
        dg.AssetKey("first"),
        dg.AssetKey("second"),
    }


def test_dagster_still_tags_a_re_execution_from_failure_so():
    from dagster._core.instance.runs import run_domain
    from dagster._core.storage.tags import RESUME_RETRY_TAG as DAGSTERS_TAG

    assert DAGSTERS_TAG == RESUME_RETRY_TAG
    # set on the run that create_reexecuted_run makes for ReexecutionStrategy.FROM_FAILURE
    source = inspect.getsource(run_domain)
    assert 'tags[RESUME_RETRY_TAG] = "true"' in source


def test_dagster_dbt_still_hands_out_the_manifest_and_translator_of_dbt_assets():
    import json

    from dagster_dbt import DagsterDbtTranslator, dbt_assets

    from movielens_assets.project import movielens_project

    translator = DagsterDbtTranslator()

    @dbt_assets(manifest=movielens_project.manifest_path, dagster_dbt_translator=translator)
    def models():
        """dbt models."""
        yield from ()

    found, found_translator = dbt_manifest_and_translator(models)
    expected = json.loads(movielens_project.manifest_path.read_text())
    assert set(found["nodes"]) == set(expected["nodes"])
    assert found_translator is translator
