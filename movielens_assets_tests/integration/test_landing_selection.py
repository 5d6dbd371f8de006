"""What a sensor run selects, checked against what dbt itself runs for that selection.

The sensor picks the assets of a run (``raw_and_downstream_keys``); dagster-dbt passes the dbt
models among them to ``dbt build --select`` and leaves dbt's default (eager) indirect selection
on, so dbt also runs every test that reads any selected model. Here real dbt (``dbt ls`` on the
project's manifest, no warehouse) says which tests those are and what each reads; no daemon.
"""

import json

import dagster as dg
import pytest
from dbt.cli.main import dbtRunner
from dbt.contracts.graph.manifest import Manifest

from movielens_assets.datasets import DATASETS
from movielens_assets.definitions import build_definitions
from movielens_assets.defs.automation.selection import (
    raw_and_downstream_keys,
    with_what_checks_read,
)
from movielens_assets.project import DBT_PROJECT_DIR

DBT_GROUPS = {"staging", "dimensions", "facts", "marts", "seeds", "snapshots"}
# The order of issue 14's reports, and the README's: each dataset landing alone, one per tick.
LANDINGS = [[name] for name in DATASETS] + [list(DATASETS)]


@pytest.fixture(scope="module")
def code_location(tmp_path_factory) -> dg.Definitions:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOVIELENS_HOME", str(tmp_path_factory.mktemp("home")))
        return build_definitions()


@pytest.fixture(scope="module")
def dbt(tmp_path_factory) -> tuple[dbtRunner, Manifest]:
    """dbt's own runner on the project, parsed once (into a scratch target folder)."""
    target = tmp_path_factory.mktemp("dbt-target")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOVIELENS_DUCKDB_PATH", str(target / "warehouse.duckdb"))
        env.setenv("DBT_TARGET_PATH", str(target))
        common = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
        parsed = dbtRunner().invoke(["parse", *common, "--quiet"])
        assert parsed.success, parsed.exception
        yield dbtRunner(manifest=parsed.result), common


def dbt_tests_run_for(dbt, models: list[str]) -> dict[str, set[str]]:
    """The tests ``dbt build --select <models>`` runs (dbt's default indirect selection), each
    with the names of the nodes it reads."""
    runner, common = dbt
    output = ["--output", "json", "--output-keys", "name depends_on"]
    selection = ["--resource-type", "test", "--select", " ".join(models)]
    listed = runner.invoke(["ls", *common, "--quiet", *selection, *output])
    assert listed.success, listed.exception
    tests = [json.loads(line) for line in listed.result]
    return {
        test["name"]: {node.rsplit(".", 1)[-1] for node in test["depends_on"]["nodes"]}
        for test in tests
    }


def selection_for(
    code_location: dg.Definitions, datasets: list[str], instance: dg.DagsterInstance | None = None
) -> list[dg.AssetKey]:
    """What the sensor selects for files of ``datasets`` (on a fresh instance by default)."""
    instance = instance or dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(definitions=code_location, instance=instance)
    return raw_and_downstream_keys(context, datasets)


@pytest.fixture(scope="module")
def all_built(code_location) -> dg.DagsterInstance:
    """An instance on which every asset of the sensor's job has been materialized once."""
    instance = dg.DagsterInstance.ephemeral()
    for key in code_location.resolve_asset_graph().get_all_asset_keys():
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
    return instance


def dagster_checks_of(code_location: dg.Definitions, keys: list[dg.AssetKey]) -> set[str]:
    """The checks a run of ``keys`` executes: every check on one of them."""
    graph = code_location.resolve_asset_graph()
    return {check.name for check in graph.asset_check_keys if check.asset_key in set(keys)}


@pytest.mark.parametrize("datasets", LANDINGS, ids=["+".join(names) for names in LANDINGS])
def test_every_test_dbt_runs_for_a_landing_reads_only_what_its_run_builds(
    code_location, dbt, datasets
):
    keys = selection_for(code_location, datasets)
    built = {key.path[-1] for key in keys if key.path[0] in DBT_GROUPS}

    tests = dbt_tests_run_for(dbt, sorted(built))

    unbuilt = {name: sorted(reads - built) for name, reads in tests.items() if reads - built}
    assert unbuilt == {}, f"dbt would run tests reading tables this run never builds: {unbuilt}"
    # and those tests are exactly the checks Dagster expects results of (none missing or extra)
    raw_checks = dagster_checks_of(code_location, [key for key in keys if key.path[0] == "raw"])
    assert set(tests) == dagster_checks_of(code_location, keys) - raw_checks


def test_tags_alone_build_the_facts_whose_checks_read_the_users_they_change(code_location):
    keys = selection_for(code_location, ["tags"])

    # dim_users (users come from tags too) is read by fct_ratings' relationships test
    assert dg.AssetKey(["dimensions", "dim_users"]) in keys
    assert dg.AssetKey(["facts", "fct_ratings"]) in keys
    assert "relationships_fct_ratings_user_id__user_id__ref_dim_users_" in dagster_checks_of(
        code_location, keys
    )


def test_movies_landing_after_ratings_checks_the_ratings_movies_again(code_location):
    first = selection_for(code_location, ["ratings"])
    after = selection_for(code_location, ["movies"])

    check = "relationships_fct_ratings_movie_id__movie_id__ref_dim_movies_"
    assert check in dagster_checks_of(code_location, first)
    assert check in dagster_checks_of(code_location, after)
    # the seed comes with dim_movies: its test reads both
    seed = dg.AssetKey(["seeds", "seed_movie_release_dates"])
    assert seed in first and seed in after


def test_once_everything_was_built_ratings_rebuild_only_what_ratings_change(
    code_location, all_built, dbt
):
    keys = selection_for(code_location, ["ratings"], all_built)
    built = {key.path[-1] for key in keys if key.path[0] in DBT_GROUPS}

    # ratings, what is downstream of them, and what those need: nothing else is rebuilt
    assert built == {"src_ratings", "fct_ratings", "dim_users", "mart_movie_ratings"}
    # fct_ratings' relationships tests still run, reading the dimensions as they are
    reads = dbt_tests_run_for(dbt, sorted(built))
    assert reads["relationships_fct_ratings_movie_id__movie_id__ref_dim_movies_"] == {
        "fct_ratings",
        "dim_movies",
    }
    assert "relationships_fct_ratings_movie_id__movie_id__ref_dim_movies_" in dagster_checks_of(
        code_location, keys
    )


def test_on_a_fresh_instance_ratings_build_the_dimensions_their_checks_read(code_location):
    keys = selection_for(code_location, ["ratings"])

    assert dg.AssetKey(["dimensions", "dim_movies"]) in keys
    assert dg.AssetKey(["raw", "raw_movies"]) in keys


def test_links_alone_build_nothing_a_check_ties_to_other_datasets(code_location):
    keys = selection_for(code_location, ["links"])

    assert keys == [dg.AssetKey(["raw", "raw_links"]), dg.AssetKey(["staging", "src_links"])]


# The closure on a small graph of stand-ins


@dg.asset(key=["raw", "raw_a"])
def raw_a() -> None:
    """Stand-in RAW table."""


@dg.asset(key=["raw", "raw_b"])
def raw_b() -> None:
    """Stand-in RAW table."""


@dg.asset(key=["facts", "fact"], deps=[raw_a])
def fact() -> None:
    """Stand-in fact read by a check of its own and pointing at a dimension."""


@dg.asset(key=["dimensions", "dim"], deps=[raw_b])
def dim() -> None:
    """Stand-in dimension."""


@dg.asset_check(asset=fact, additional_deps=[dim])
def fact_points_at_dim() -> dg.AssetCheckResult:
    """Stand-in relationships test."""
    return dg.AssetCheckResult(passed=True)


def test_a_check_brings_its_other_side_and_what_it_needs_upstream():
    specs = list(fact_points_at_dim.check_specs)

    grown = with_what_checks_read({fact.key}, specs, [raw_a, raw_b, fact, dim])

    assert grown == {fact.key, dim.key, raw_b.key}


def test_a_check_reading_a_built_asset_brings_the_asset_it_checks():
    specs = list(fact_points_at_dim.check_specs)

    grown = with_what_checks_read({dim.key}, specs, [raw_a, raw_b, fact, dim])

    assert grown == {dim.key, fact.key, raw_a.key}


def test_a_checks_other_side_built_before_stays_out():
    specs = list(fact_points_at_dim.check_specs)
    assets = [raw_a, raw_b, fact, dim]

    assert with_what_checks_read({fact.key}, specs, assets, existing={dim.key}) == {fact.key}


def test_the_checked_asset_comes_along_even_when_it_exists():
    """Built alone, dim would have fact's check run by dbt but recorded by dagster-dbt as an
    observation only: an earlier failure of the check would stand although it now passes."""
    specs = list(fact_points_at_dim.check_specs)
    assets = [raw_a, raw_b, fact, dim]

    grown = with_what_checks_read({dim.key}, specs, assets, existing={fact.key, raw_a.key})

    assert grown == {dim.key, fact.key}  # and not raw_a: fact's existing input stays as it is
    # what exists but is not the other side changes nothing
    assert with_what_checks_read({fact.key}, specs, assets, existing={raw_a.key}) == {
        fact.key,
        dim.key,
        raw_b.key,
    }


def test_assets_no_check_ties_together_stay_apart():
    specs = list(fact_points_at_dim.check_specs)

    assert with_what_checks_read({raw_b.key}, specs, [raw_a, raw_b, fact, dim]) == {raw_b.key}
