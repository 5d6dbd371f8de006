"""The dbt step on DuckDB: events reach Dagster while dbt runs; a re-execution from failure
builds only what failed.

Real parts: RAW loaded from the bundled sample through the loopback S3 server by the project's
loader into a real DuckDB file, real dbt (dbt-duckdb) started by dagster-dbt, real Dagster runs
recording into a real (temporary) instance.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_dbt import DbtCliResource, DbtProject

from movielens_assets.defs.dbt.assets import build_dbt_assets
from movielens_assets.lib.dagster_internals import RESUME_RETRY_TAG
from movielens_assets.project import DBT_PROJECT_DIR, movielens_project
from movielens_assets.resources import build_resources
from movielens_assets.settings import Settings
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse
from movielens_assets_tests.conftest import SAMPLE, csv_rows

pytestmark = pytest.mark.timeout(300)
log = logging.getLogger(__name__)
BIN = Path(sys.executable).parent

GATE_MODEL = '''
import os
import time
from pathlib import Path


def model(dbt, session):
    """Test only: waits for the test to open the gate (at most 240 s)."""
    dbt.config(materialized="table")
    movies = dbt.ref("dim_movies")
    gate = Path(os.environ["MOVIELENS_TEST_GATE"])
    gate.with_suffix(".waiting").touch()
    deadline = time.monotonic() + 240
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return movies.limit(1)
'''
"""A dbt Python model, only in the test's copy of the project, that holds dbt in the middle of
the build until the test opens its gate (a file)."""


def unique_ids(metadata_of: Iterable) -> set[str]:
    return {str(metadata["unique_id"].value) for metadata in metadata_of}


def materialized(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """The dbt unique ids a run materialized."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return unique_ids(r.event_log_entry.asset_materialization.metadata for r in records)


def evaluated(instance: dg.DagsterInstance, run_id: str, passed: bool | None = None) -> set[str]:
    """The dbt unique ids of the tests whose check a run evaluated (``passed``: only those)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return unique_ids(
        evaluation.metadata
        for evaluation in evaluations
        if passed is None or evaluation.passed == passed
    )


# --- events while dbt runs -------------------------------------------------------------------


def project_with_gate(tmp_path: Path, warehouse: Path) -> DbtProject:
    """A copy of the dbt project with the gate model in marts/, parsed."""
    copy = tmp_path / "movielens_dbt"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    (copy / "models" / "marts" / "zz_gate.py").write_text(GATE_MODEL)
    env = {**os.environ, "MOVIELENS_DUCKDB_PATH": str(warehouse), "DO_NOT_TRACK": "1"}
    subprocess.run(
        [
            *(str(BIN / "dbt"), "parse", "--project-dir", str(copy), "--profiles-dir", str(copy)),
            *("--target-path", str(copy / "target")),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    # the build's dbt reuses this parse (same profile), as the step keeps it between runs
    kept = Path(os.environ["DBT_TARGET_PATH"]) / "partial_parse.msgpack"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(copy / "target" / "partial_parse.msgpack", kept)
    return DbtProject(project_dir=copy, profiles_dir=copy)


def wait_until(condition, what: str, run: threading.Thread, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if not run.is_alive():
            raise AssertionError(f"the run ended before {what}")
        time.sleep(0.1)
    raise TimeoutError(f"not within {timeout} s: {what}")


def dbt_finished_at(target_root: Path, unique_id: str) -> datetime | None:
    """When dbt's own log says it finished a node (for the report; not asserted)."""
    for path in target_root.rglob("dbt.log"):
        for line in path.read_text(errors="replace").splitlines():
            if unique_id not in line or "NodeFinished" not in line:
                continue
            try:
                return datetime.fromisoformat(json.loads(line)["info"]["ts"])
            except (ValueError, KeyError):
                continue
    return None


def test_a_models_materialization_is_stored_while_dbt_still_builds_later_models(
    home, tmp_path, monkeypatch
):
    gate = tmp_path / "gate"
    monkeypatch.setenv("MOVIELENS_TEST_GATE", str(gate))
    project = project_with_gate(tmp_path, home / "warehouse.duckdb")
    assets = build_dbt_assets(Settings.from_env(), project)
    resources = {
        "dbt": DbtCliResource(project_dir=project, target="local"),
        "warehouse": DuckDBWarehouse(path=str(home / "warehouse.duckdb")),
    }
    dim_movies, gate_key = (
        dg.AssetKey(["dimensions", "dim_movies"]),
        dg.AssetKey(["marts", "zz_gate"]),
    )
    # the gate and what it reads (and their tests, all parents of which are selected)
    up_to_the_gate = dg.AssetSelection.assets(gate_key).upstream() - dg.AssetSelection.key_prefixes(
        "raw"
    )
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    with dg.instance_for_test() as instance:
        outcome: dict = {}

        def run() -> None:
            result = dg.materialize(
                [assets], selection=up_to_the_gate, resources=resources, instance=instance
            )
            outcome["success"] = result.success

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        try:
            stored = wait_until(
                lambda: instance.fetch_materializations(dim_movies, limit=1).records,
                "dim_movies' materialization was stored",
                runner,
            )
            wait_until(gate.with_suffix(".waiting").exists, "dbt reached the gate", runner)
            # dbt is held in the gate model: the run is still going, its model not stored yet
            assert runner.is_alive()
            assert instance.fetch_materializations(gate_key, limit=1).records == []
        finally:
            gate.touch()
            runner.join(timeout=240)
        assert outcome == {"success": True}

        (record,) = stored
        metadata = record.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == len(csv_rows(SAMPLE / "movies.csv"))
        columns = [column.name for column in metadata["dagster/column_schema"].value.columns]
        assert "movie_id" in columns and "movie_title" in columns
        assert len(instance.fetch_materializations(gate_key, limit=1).records) == 1

        finished = dbt_finished_at(home / "dbt-target", "model.movielens_dbt.dim_movies")
        if finished is not None:
            delay = datetime.fromtimestamp(record.timestamp, tz=UTC) - finished
            log.warning(f"dim_movies stored {delay.total_seconds():.2f} s after dbt finished it")


# --- re-execution from failure ---------------------------------------------------------------


def dbt_job() -> dg.JobDefinition:
    """The dbt assets alone as a job (a reconstructable target for re-execution)."""
    settings = Settings.from_env()
    resources = build_resources(settings)
    return dg.Definitions(
        assets=[build_dbt_assets(settings)],
        resources={"dbt": resources["dbt"], "warehouse": resources["warehouse"]},
        jobs=[dg.define_asset_job("dbt_only")],
        executor=dg.in_process_executor,
    ).resolve_job_def("dbt_only")


def downstream(manifest: dict, roots: Iterable[str]) -> set[str]:
    """``roots`` and every node below them, by the manifest's child_map."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(manifest["child_map"].get(node, []))
    return seen


def test_re_executing_from_failure_builds_only_the_failed_model_and_its_downstream(home):
    manifest = json.loads(movielens_project.manifest_path.read_text())
    nodes = manifest["nodes"]
    buildable = {
        unique_id
        for unique_id, node in nodes.items()
        if node["resource_type"] in ("model", "seed", "snapshot")
        and node["config"].get("materialized") != "ephemeral"
    }
    warehouse = home / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("alter table raw.raw_ratings rename to raw_ratings_away")

    job = dg.reconstructable(dbt_job)
    with dg.instance_for_test() as instance:
        with dg.execute_job(job, instance=instance, raise_on_error=False) as failed:
            assert not failed.success
            first = failed.run_id
        with duckdb.connect(str(warehouse)) as connection:
            connection.execute("alter table raw.raw_ratings_away rename to raw_ratings")
        with dg.execute_job(
            job,
            instance=instance,
            raise_on_error=False,
            reexecution_options=dg.ReexecutionOptions.from_failure(first, instance),
            # what the UI's "Re-execute from failure" and run retries (FROM_FAILURE) tag it with
            tags={RESUME_RETRY_TAG: "true"},
        ) as retried:
            assert retried.success
            second = retried.run_id

        # the failure: everything reading RAW ratings, and what is downstream of it
        failed_below = downstream(
            manifest, manifest["child_map"]["source.movielens_dbt.raw.raw_ratings"]
        )
        assert "model.movielens_dbt.src_ratings" in failed_below
        built_first, built_again = materialized(instance, first), materialized(instance, second)
        assert built_again == failed_below & buildable
        assert built_first == buildable - failed_below
        assert "snapshot.movielens_dbt.snap_tags" in built_first  # taken once, not again
        check_names = {key.name for key in build_dbt_assets(Settings.from_env()).check_keys}
        checks = {
            unique_id
            for unique_id, node in nodes.items()
            if node["resource_type"] == "test" and node["name"] in check_names
        }
        assert evaluated(instance, second) == failed_below & checks
        assert not evaluated(instance, second) & evaluated(instance, first, passed=True)

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        pairs = connection.execute("select count(*) from dev.fct_ratings").fetchone()[0]
    assert pairs == len({(row[0], row[1]) for row in csv_rows(SAMPLE / "ratings.csv")})
