"""The code location as Dagster loads it: keys, groups, kinds, checks and lineage."""

import json
import re
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from movielens_assets.datasets import DATASETS
from movielens_assets.definitions import build_definitions
from movielens_assets.defs.raw.checks import NO_REJECTED_FILES, ROWS_MATCH_LEDGER
from movielens_assets.project import movielens_project
from movielens_assets.resources import dbt_resource
from movielens_assets.settings import Settings


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOVIELENS_HOME", str(tmp_path_factory.mktemp("home")))
        return build_definitions().resolve_asset_graph()


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(movielens_project.manifest_path.read_text())


def test_every_dataset_has_a_landing_and_a_raw_asset_in_its_group(graph):
    for dataset in DATASETS:
        landing = graph.get(dg.AssetKey(["landing", dataset]))
        raw = graph.get(dg.AssetKey(["raw", f"raw_{dataset}"]))
        assert landing.group_name == "landing" and "s3" in landing.kinds
        assert raw.group_name == "raw" and "duckdb" in raw.kinds
        assert raw.parent_keys == {landing.key}


def test_dbt_models_are_grouped_by_folder_and_staging_reads_the_raw_assets(graph, manifest):
    models = {
        node["name"]: node["fqn"][1]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] != "ephemeral"
    }
    assert {"staging", "dimensions", "facts", "marts"} <= set(models.values())
    for name, folder in models.items():
        assert graph.get(dg.AssetKey([folder, name])).group_name == folder
    assert graph.get(dg.AssetKey(["staging", "src_ratings"])).parent_keys == {
        dg.AssetKey(["raw", "raw_ratings"])
    }
    assert graph.get(dg.AssetKey(["seeds", "seed_movie_release_dates"])).group_name == "seeds"
    assert graph.get(dg.AssetKey(["snapshots", "snap_tags"])).group_name == "snapshots"


def test_every_dbt_test_is_a_blocking_check_on_the_model_it_tests(graph, manifest):
    tests = [node for node in manifest["nodes"].values() if node["resource_type"] == "test"]
    raw_checks = {"dbt_source_freshness", NO_REJECTED_FILES, ROWS_MATCH_LEDGER}
    check_keys = {key for key in graph.asset_check_keys if key.name not in raw_checks}
    assert len(check_keys) == len(tests)
    checks = {key.name: key.asset_key for key in check_keys}
    assert checks["relevance_score_test"] == dg.AssetKey(["facts", "fct_genome_scores"])
    relationship = next(
        name for name in checks if name.startswith("relationships_fct_ratings_movie")
    )
    assert checks[relationship] == dg.AssetKey(["facts", "fct_ratings"])
    severity = {node["name"]: node["config"]["severity"].lower() for node in tests}
    assert {key.name: graph.get_check_spec(key).blocking for key in check_keys} == {
        name: level == "error" for name, level in severity.items()
    }
    assert list(severity.values()).count("warn") == 1  # the seed's reference check


def test_every_raw_asset_reports_dbt_source_freshness_as_a_non_blocking_check(graph):
    freshness = {key for key in graph.asset_check_keys if key.name == "dbt_source_freshness"}
    assert {key.asset_key for key in freshness} == {
        dg.AssetKey(["raw", f"raw_{dataset}"]) for dataset in DATASETS
    }
    assert not any(graph.get_check_spec(key).blocking for key in freshness)


def hours(window) -> float:
    return (window.days * 86400 + window.seconds) / 3600


def test_raw_assets_and_marts_carry_the_freshness_windows_the_dbt_project_declares(graph):
    """One declaration: the dbt source's freshness for RAW, the marts folder's meta.freshness
    (read here from the YAML files themselves, not through the code under test)."""
    project = movielens_project.project_dir
    sources = yaml.safe_load((project / "models/staging/_sources.yml").read_text())
    raw_windows = sources["sources"][0]["config"]["freshness"]
    marts = yaml.safe_load((project / "dbt_project.yml").read_text())["models"]["movielens_dbt"]
    marts_windows = marts["marts"]["+meta"]["freshness"]
    for key, windows in [
        (dg.AssetKey(["raw", "raw_ratings"]), raw_windows),
        (dg.AssetKey(["raw", "raw_genome_scores"]), raw_windows),
        (dg.AssetKey(["marts", "mart_movie_ratings"]), marts_windows),
    ]:
        policy = graph.get(key).freshness_policy
        assert windows["warn_after"]["period"] == windows["error_after"]["period"] == "hour"
        assert hours(policy.warn_window) == windows["warn_after"]["count"]
        assert hours(policy.fail_window) == windows["error_after"]["count"]
    assert graph.get(dg.AssetKey(["facts", "fct_ratings"])).freshness_policy is None


def test_dbt_asset_pages_link_to_the_dbt_docs(graph):
    link = graph.get(dg.AssetKey(["dimensions", "dim_movies"])).metadata["dbt_docs"]
    assert link.url == "http://127.0.0.1:8080/#!/model/model.movielens_dbt.dim_movies"


def test_every_raw_asset_has_a_rejection_check_and_a_blocking_ledger_reconciliation(graph):
    for dataset in DATASETS:
        asset = dg.AssetKey(["raw", f"raw_{dataset}"])
        assert not graph.get_check_spec(dg.AssetCheckKey(asset, NO_REJECTED_FILES)).blocking
        assert graph.get_check_spec(dg.AssetCheckKey(asset, ROWS_MATCH_LEDGER)).blocking


def dbt_yaml_test_description(path: str, model: str, column: str, test: str) -> str:
    """A generic test's ``description`` as its YAML file states it, read with PyYAML."""
    properties = yaml.safe_load((movielens_project.project_dir / path).read_text())
    (node,) = [node for node in properties["models"] if node["name"] == model]
    (entry,) = [entry for entry in node["columns"] if entry["name"] == column]
    (spec,) = [spec for spec in entry["data_tests"] if isinstance(spec, dict) and test in spec]
    return spec[test]["description"]


def test_every_dbt_test_check_has_a_readable_description(graph, manifest):
    tests = {
        node["name"]: node for node in manifest["nodes"].values() if node["resource_type"] == "test"
    }
    described = {
        key.name: graph.get_check_spec(key).description
        for key in graph.asset_check_keys
        if key.name in tests
    }
    assert set(described) == set(tests)
    for name, description in described.items():
        assert description and description.strip(), f"{name} has no description"
        assert description.strip() != name
        assert description == tests[name]["description"]

    relationship = next(
        name for name in described if name.startswith("relationships_fct_ratings_movie_id")
    )
    assert described[relationship] == dbt_yaml_test_description(
        "models/facts/_facts__models.yml", "fct_ratings", "movie_id", "relationships"
    )
    singular = yaml.safe_load((movielens_project.project_dir / "tests/_tests.yml").read_text())
    for entry in singular["data_tests"]:
        assert described[entry["name"]].strip() == entry["description"].strip()


def test_the_dbt_resource_knows_the_version_the_dbt_executable_reports():
    """The resource reads dbt's version from the installed package instead of starting
    ``dbt --version`` at every step; the executable itself must agree."""
    dbt = dbt_resource(Settings.from_env())
    reported = subprocess.run(
        [dbt.dbt_executable, "--version"], capture_output=True, text=True, check=True
    ).stdout
    installed = re.search(r"installed:\s*(\d+\.\d+\.\d+)", reported)
    assert installed, reported
    assert str(dbt._cli_version) == installed.group(1)  # lib/dagster_internals.py


def test_loading_the_code_location_imports_no_tooling():
    """Loaded as Dagster loads it, in a fresh process: no module of ``movielens_assets.tools``."""
    code = (
        "import sys\n"
        "from movielens_assets.definitions import defs\n"
        "assert defs().resolve_asset_graph()\n"
        "print(sorted(m for m in sys.modules if m.startswith('movielens_assets.')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "movielens_assets.defs.dbt.assets" in loaded
    assert "movielens_assets.tools" not in loaded
