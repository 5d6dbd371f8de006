"""Concurrency follows the target: on DuckDB every step that opens the warehouse is in the one
`duckdb_warehouse` pool; on Snowflake RAW loads and dbt builds have pools of their own and steps
run in their own processes."""

import dagster as dg
import pytest

from movielens_assets.definitions import build_definitions
from movielens_assets.defs.dbt.assets import build_dbt_assets
from movielens_assets.defs.raw.assets import build_raw_assets
from movielens_assets.defs.raw.checks import build_raw_checks
from movielens_assets.resources import run_executor
from movielens_assets.settings import (
    DUCKDB_POOL,
    SNOWFLAKE_DBT_POOL,
    SNOWFLAKE_RAW_POOL,
    Settings,
)


@pytest.fixture(scope="module")
def local_definitions(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOVIELENS_HOME", str(tmp_path_factory.mktemp("home")))
        env.delenv("MOVIELENS_TARGET", raising=False)
        return build_definitions()


def test_on_duckdb_every_step_that_opens_the_warehouse_is_in_its_one_pool(local_definitions):
    graph = local_definitions.resolve_asset_graph()
    steps = {
        definition.node_def.name: definition
        for definition in graph.assets_defs
        if definition.is_executable
    }
    touching = {
        name
        for name, definition in steps.items()
        if {"warehouse", "dbt"} & definition.required_resource_keys
    }
    assert {"raw_tables", "raw_load_checks", "raw_source_freshness", "movielens_dbt_models"} <= (
        touching
    )
    for name, definition in steps.items():
        assert definition.node_def.pool == (DUCKDB_POOL if name in touching else None), name


def test_on_duckdb_a_run_is_one_process(local_definitions):
    job = local_definitions.resolve_job_def("raw_and_downstream_job")
    assert job.executor_def is dg.in_process_executor


def test_on_snowflake_loads_and_builds_have_their_own_pools_and_processes():
    settings = Settings.from_env({"MOVIELENS_TARGET": "prod"})
    assert build_raw_assets(settings).node_def.pool == SNOWFLAKE_RAW_POOL
    assert build_dbt_assets(settings).node_def.pool == SNOWFLAKE_DBT_POOL
    [checks] = build_raw_checks(pool=settings.pools.checks)
    assert checks.node_def.pool is None  # reads only
    assert run_executor(settings) is dg.multiprocess_executor
