"""Two runs at once on the Snowflake target: nothing loaded twice, the tables consistent.

fakesnow (0.12.1) is an emulator standing in for Snowflake, the only mock here: its server mode
(``fakesnow -s``, started by ``test_dbt_on_fakesnow.py``'s fixture) holds one database that
several client processes share, each statement of each session run in the server's thread
pool, so two runs really overlap on it. The landing files are on a real loopback S3 (moto).

The instance is the production one: ``deploy/dagster.yaml`` as it is (PostgreSQL storage, its
``concurrency`` pools) on a throwaway PostgreSQL cluster, since the pools must bind runs in
different processes, prepared by the compose file's ``migrate`` commands (its schema, then
``movielens init-pools``: without it this test once failed the second run's dbt step,
dagster-io/dagster#33552, ``test_instance_pools.py``). The two runs are two Dagster runs, each in
its own process (``dg.materialize``), on the same new files: RAW of every dataset and the dbt
models up to ``dim_movies``, on the ``prod`` target (the production pools and loader; the COPY is
the test-only ``FakesnowWarehouse`` one, whose docstring says why). The RAW pool (limit 1) queues
one run's load behind the other's, which then finds every file in the ledger. dbt stops at
``dim_movies``: a second build of the incremental ``fct_ratings`` or of the snapshot fails on
fakesnow only (``test_dbt_on_fakesnow.py``).

The second run is released once the first holds the RAW pool's slot, not in the same
millisecond. Dagster's claim of a free slot is two statements (``has_unassigned_slots``, then
``add_pending_step``; ``_claim_concurrency_slot``'s ``SELECT ... FOR UPDATE`` runs in autocommit),
so two claims within a few milliseconds of each other can both get a limit-1 pool's slot: on a
SQLite instance, with both runs released together, that happened about one run in three. The
README's "Concurrency" says what that leaves open on Snowflake.

Not covered: ``snowflake_raw_loads`` raised above 1 with both runs loading the same dataset.
Both COPY the same files in overlapping transactions: on fakesnow the second ledger insert then
violates the ledger's primary key (DuckDB enforces it; the server answers HTTP 500 and the
connector retries for minutes); Snowflake does not enforce the key.

Expectations come from the CSV files read with Python's csv module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.lib import s3 as s3lib
from movielens_assets.settings import PROJECT_ROOT, SNOWFLAKE_RAW_POOL
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.e2e.deployment import wait_for, write_big_ratings
from movielens_assets_tests.e2e.production import migrate
from movielens_assets_tests.integration.test_dbt_on_fakesnow import (  # noqa: F401 (fixtures)
    connect,
    create_stage_and_file_format,
    fakesnow_server,
    snowflake_env,
)
from movielens_assets_tests.postgres_cluster import Cluster, throwaway_cluster

pytestmark = [pytest.mark.snowflake, pytest.mark.timeout(600)]

BIN = Path(sys.executable).parent
EXTRA_ROWS = 1_000_000
"""A new ratings file big enough that its COPY takes seconds: the first run's RAW step still
holds the pool's slot when the second run's asks for it."""
HELD_SLOT = (
    "select count(*) from concurrency_slots where concurrency_key = %s and run_id is not null"
)
DATASETS_LANDED = ("movies", "ratings", "tags", "links")

RUN = """
import json, sys, time
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from movielens_assets.defs.dbt.assets import build_dbt_assets
from movielens_assets.defs.raw.assets import build_raw_assets
from movielens_assets.lib.asset_keys import raw_key
from movielens_assets.project import movielens_project
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import Settings
from movielens_assets_tests.integration.test_snowflake_loader import FakesnowWarehouse

settings = Settings.from_env()
raw, dbt = build_raw_assets(settings), build_dbt_assets(settings)
selection = dg.AssetSelection.assets(
    *(raw_key(name) for name in sys.argv[2].split(","))
) | (
    dg.AssetSelection.assets(dg.AssetKey(["dimensions", "dim_movies"])).upstream()
    - dg.AssetSelection.key_prefixes("raw")
)
Path(sys.argv[3]).touch()  # imported and built: ready
go = Path(sys.argv[1])
while not go.exists():  # released together with the other run
    time.sleep(0.01)
result = dg.materialize(
    [raw, dbt],
    selection=selection,
    instance=dg.DagsterInstance.get(),
    resources={
        "s3": LandingBucket(bucket=settings.bucket, prefix=settings.prefix),
        "warehouse": FakesnowWarehouse.from_settings(settings),
        "dbt": DbtCliResource(project_dir=movielens_project, target="prod"),
    },
    raise_on_error=False,
)
loaded = {
    event.asset_key.path[-1]: [
        item["key"] for item in event.materialization.metadata["loaded_files"].data
    ]
    for event in result.get_asset_materialization_events()
    if event.asset_key.path[0] == "raw"
}
print(json.dumps({"run_id": result.run_id, "success": result.success, "loaded": loaded}))
"""
"""One run, in its own process: says it is ready by creating ``argv[3]``, starts once the file
``argv[1]`` exists."""


def snowflake_rows(env: dict[str, str], sql: str) -> list[tuple]:
    with connect(env) as connection:
        return connection.cursor().execute(sql).fetchall()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
    with throwaway_cluster() as cluster:
        yield cluster


def test_two_runs_at_once_on_snowflake_load_each_file_once_and_build_consistent_tables(
    landing,
    postgres: Cluster,
    snowflake_env,  # noqa: F811 (a fixture)
    tmp_path,
):
    """Emulator (fakesnow) standing in for Snowflake (module docstring): both runs succeed, each
    landed file has one ledger row and its CSV's rows once in RAW, and dim_movies is the movies
    file's rows once."""
    create_stage_and_file_format(snowflake_env)
    client = landing.get_client()
    files = {}
    for dataset in DATASETS_LANDED:
        path = SAMPLE / DATASETS[dataset].grouplens_file
        key = landing.dataset_prefix(dataset) + path.name
        s3lib.upload(client, path, landing.bucket, key)
        files[key] = path
    extra = tmp_path / "ratings-extra.csv"
    write_big_ratings(extra, EXTRA_ROWS, first_user=700)
    extra_key = landing.dataset_prefix("ratings") + extra.name
    s3lib.upload(client, extra, landing.bucket, extra_key)
    files[extra_key] = extra

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        **snowflake_env,
        **postgres.env(),
        "DAGSTER_HOME": str(dagster_home),
        "MOVIELENS_TARGET": "prod",
        "MOVIELENS_S3_BUCKET": landing.bucket,
        "MOVIELENS_S3_PREFIX": "landing",
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        # no relationship tests towards models outside the selection (fct_ratings)
        "DBT_INDIRECT_SELECTION": "cautious",
        "DO_NOT_TRACK": "1",
    }
    # The instance prepared first, as the compose file's migrate service does: the schema (two
    # processes creating it at once would race) and the pools' own limits (instance_pools.py).
    migrate(env)

    runs = [
        subprocess.Popen(
            [
                *(str(BIN / "python"), "-c", RUN, str(tmp_path / f"go-{number}")),
                *(",".join(DATASETS_LANDED), str(tmp_path / f"ready-{number}")),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"run-{number}.log").open("w"),
            text=True,
        )
        for number in range(2)
    ]

    def ready() -> bool | None:
        assert all(process.poll() is None for process in runs), "a run's process exited"
        return all((tmp_path / f"ready-{number}").exists() for number in range(2)) or None

    def raw_slot_held() -> bool | None:
        assert runs[0].poll() is None, "the first run ended before it held the RAW pool's slot"
        with contextlib.closing(postgres.connect()) as connection, connection.cursor() as cursor:
            cursor.execute(HELD_SLOT, [SNOWFLAKE_RAW_POOL])
            return cursor.fetchone()[0] > 0 or None

    wait_for("both runs' processes ready", ready, timeout=300, every=0.1)
    (tmp_path / "go-0").touch()
    wait_for("the first run holding the RAW pool's slot", raw_slot_held, timeout=120, every=0.05)
    (tmp_path / "go-1").touch()
    outcomes = []
    for number, process in enumerate(runs):
        out, _ = process.communicate(timeout=480)
        log = (tmp_path / f"run-{number}.log").read_text()
        assert process.returncode == 0, log[-5000:]
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    logs = [(tmp_path / f"run-{number}.log").read_text() for number in range(2)]
    assert [outcome["success"] for outcome in outcomes] == [True, True], "\n".join(
        log[-4000:] for log in logs
    )

    ledger = snowflake_rows(
        snowflake_env, 'select "S3_KEY", "ROWS_LOADED", "RUN_ID" from MOVIELENS.RAW.LOAD_LEDGER'
    )
    assert Counter(key for key, _, _ in ledger) == Counter(list(files))  # one ledger row per file
    assert {key: rows for key, rows, _ in ledger} == {
        key: len(csv_rows(path)) for key, path in files.items()
    }
    assert {run_id for _, _, run_id in ledger} <= {outcome["run_id"] for outcome in outcomes}
    for dataset in DATASETS_LANDED:
        table = f"MOVIELENS.RAW.RAW_{dataset.upper()}"
        by_file = dict(
            snowflake_rows(
                snowflake_env, f'select "_SOURCE_FILE", count(*) from {table} group by 1'
            )
        )
        assert by_file == {
            key: len(csv_rows(path))
            for key, path in files.items()
            if key.startswith(landing.dataset_prefix(dataset))
        }, dataset
    movies = csv_rows(SAMPLE / "movies.csv")
    assert snowflake_rows(
        snowflake_env, "select count(*), count(distinct movie_id) from MOVIELENS.DEV.DIM_MOVIES"
    ) == [(len(movies), len({row[0] for row in movies}))]
    # They ran at once: the second run's RAW step waited for the first's slot in the RAW pool.
    assert f"Step blocked by limit for pool {SNOWFLAKE_RAW_POOL}" in logs[1], "no overlap"
    # Each file is reported loaded by exactly one of the runs; the other found it in the ledger.
    reported = Counter(
        key for outcome in outcomes for keys in outcome["loaded"].values() for key in keys
    )
    assert reported == Counter(list(files))
