"""The whole dbt project's first ``dbt build`` on dbt-snowflake, against fakesnow in server mode.

fakesnow (0.12.1) is an emulator standing in for Snowflake: an HTTP server speaking the
Snowflake connector's protocol, running the SQL on DuckDB. dbt reaches it through the ``prod``
output of ``movielens_dbt/profiles.yml`` with ``SNOWFLAKE_HOST=localhost``, ``SNOWFLAKE_PORT``
and ``SNOWFLAKE_PROTOCOL=http`` and dummy credentials; nothing in the dbt project changes.

RAW is loaded through the server by the project's loader, with the test-only COPY of
``test_snowflake_loader.py`` (``FakesnowWarehouse``; its docstring says which fakesnow
limitations force it). The server process applies the same ``with_quote_escape`` patch, since
fakesnow's COPY otherwise cannot read movies.csv's doubled quotes.

Only a first build is checked (it builds 14 models, the seed and the snapshot and runs 53
tests), without dbt's unit tests, as the pipeline's build runs it: a unit test stages its
fixtures in temporary tables, which fakesnow refuses as described next ("TEMPORARY table
names ..."); they run on DuckDB in ``test_dbt_unit_tests.py``. A second ``dbt build`` on
the same server fails, on fakesnow only, as measured here:
``fct_ratings`` and ``fct_genome_scores`` (incremental, strategy ``delete+insert``, and the
same with ``merge`` before it) and the snapshot
``snap_tags`` stop with "001003 (42000): Parser Error: TEMPORARY table names can *only* use
the "temp" catalog", and the 24 tests and models downstream of them are skipped. On a rerun,
dbt-snowflake first stages the new rows in ``create or replace temporary table
MOVIELENS.DEV.<name>__dbt_tmp``; DuckDB keeps temporary tables in its own ``temp`` catalog and
refuses a database-qualified name, and fakesnow passes the name through. The step after it,
which this project never reaches on fakesnow, is a write inside ``begin ... commit`` that
reads and writes two DuckDB catalogs (FIELD-NOTES: DuckDB refuses such a multi-database transaction,
and fakesnow mis-parses an unqualified ``MERGE ... VALUES (col)``). So second runs of
incremental models and snapshots are covered on DuckDB only, and on Snowflake by the stock
dbt-snowflake materializations; no production macro works around fakesnow.
"""

import inspect
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import snowflake.connector
from dagster_dbt import DbtCliResource
from fakesnow.transforms.transforms import SUCCESS_NOP
from sqlglot import exp

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.dbt.assets import build_dbt_assets
from movielens_assets.lib import s3 as s3lib
from movielens_assets.project import movielens_project
from movielens_assets.settings import PROJECT_ROOT, Settings
from movielens_assets.tools.dev_process import free_port
from movielens_assets.warehouse.snowflake.setup_sql import CSV_FORMAT_OPTIONS
from movielens_assets.warehouse.snowflake.sql import DEFAULT_FILE_FORMAT, DEFAULT_STAGE
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.integration.test_snowflake_loader import (
    FAKESNOW_UNSUPPORTED_FORMAT_OPTIONS,
    SNOWFLAKE_ENV,
    FakesnowWarehouse,
    with_quote_escape,
)

pytestmark = [pytest.mark.snowflake, pytest.mark.timeout(300)]
log = logging.getLogger(__name__)

DBT_PROJECT = PROJECT_ROOT / "movielens_dbt"
BIN = Path(sys.executable).parent


def with_query_tags(alter_session):
    """fakesnow's ALTER SESSION, also taking ``SET QUERY_TAG = '...'`` (which fakesnow 0.12.1
    refuses as not implemented): the tag is appended, as one JSON string a line, to the file
    named by ``FAKESNOW_QUERY_TAGS``, and the statement succeeds doing nothing else."""

    def alter_session_with_query_tags(expression):
        text = expression.sql(dialect="snowflake") if isinstance(expression, exp.Alter) else ""
        if expression.args.get("kind") == "SESSION" and "QUERY_TAG" in text.upper():
            literal = expression.find(exp.Literal)
            with open(os.environ["FAKESNOW_QUERY_TAGS"], "a") as tags:
                tags.write(json.dumps(literal.this if literal else None) + "\n")
            return SUCCESS_NOP
        return alter_session(expression)

    return alter_session_with_query_tags


SERVER = f"""
import json
import os
import sys

import fakesnow.transforms
from fakesnow.copy_into import ReadCSV
from fakesnow.transforms.transforms import SUCCESS_NOP
from sqlglot import exp

{inspect.getsource(with_quote_escape)}

{inspect.getsource(with_query_tags)}

ReadCSV.read_expression = with_quote_escape(ReadCSV.read_expression)
fakesnow.transforms.alter_session = with_query_tags(fakesnow.transforms.alter_session)

import fakesnow.cli

sys.exit(fakesnow.cli.main(["-s", "-p", sys.argv[1]]))
"""
"""``fakesnow -s -p PORT`` with the test-only patches applied in the server: the quote escape,
and query tags recorded (their source copied in, so the server does not import this project
and starts in under a second)."""


QUERY_TAGS = "query-tags.jsonl"
"""The file, in the test's folder, where the server records each query tag a session sets."""


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fakesnow exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"fakesnow did not listen on {port} within {timeout} s")


@pytest.fixture
def fakesnow_server(tmp_path: Path):
    """A fakesnow server process on a free loopback port; yields the port."""
    port = free_port()
    with (tmp_path / "fakesnow.log").open("w") as server_log:
        process = subprocess.Popen(
            [str(BIN / "python"), "-c", SERVER, str(port)],
            cwd=PROJECT_ROOT,
            # fakesnow keeps internal stages in a temporary folder it never removes.
            env={
                **os.environ,
                "TMPDIR": str(tmp_path),
                "FAKESNOW_QUERY_TAGS": str(tmp_path / QUERY_TAGS),
            },
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_listening(port, process)
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def snowflake_env(fakesnow_server: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The ``SNOWFLAKE_*`` variables pointing the loader and dbt at the server."""
    env = {
        **SNOWFLAKE_ENV,
        "SNOWFLAKE_HOST": "localhost",
        "SNOWFLAKE_PORT": str(fakesnow_server),
        "SNOWFLAKE_PROTOCOL": "http",
        "SNOWFLAKE_WAREHOUSE": "MOVIELENS_WH",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SNOWFLAKE_ROLE", raising=False)
    return env


def connect(env: dict[str, str]):
    return snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"],
        user=env["SNOWFLAKE_USER"],
        password=env["SNOWFLAKE_PASSWORD"],
        host=env["SNOWFLAKE_HOST"],
        port=int(env["SNOWFLAKE_PORT"]),
        protocol=env["SNOWFLAKE_PROTOCOL"],
        database="MOVIELENS",
        schema="RAW",
        network_timeout=10,
    )


def create_stage_and_file_format(env: dict[str, str]) -> None:
    """What ``snowflake/setup.sql`` creates for the loader, less what fakesnow cannot take."""
    options = " ".join(
        f"{option} = {value}"
        for option, value in CSV_FORMAT_OPTIONS
        if option not in FAKESNOW_UNSUPPORTED_FORMAT_OPTIONS
    )
    with connect(env) as connection:
        connection.cursor().execute(f"create stage if not exists {DEFAULT_STAGE}")
        connection.cursor().execute(
            f"create file format if not exists {DEFAULT_FILE_FORMAT} {options}"
        )


def load_raw(landing, env: dict[str, str]) -> FakesnowWarehouse:
    """Land the sample in S3 and load every dataset through the server with the loader."""
    create_stage_and_file_format(env)
    client = landing.get_client()
    for dataset in ("movies", "ratings", "tags", "links"):
        path = SAMPLE / DATASETS[dataset].grouplens_file
        s3lib.upload(client, path, landing.bucket, landing.dataset_prefix(dataset) + path.name)
    with dg.build_resources(
        {"warehouse": FakesnowWarehouse.from_settings(Settings.from_env())}
    ) as resources:
        warehouse = resources.warehouse
        warehouse.ensure_raw_tables()
        for dataset in DATASETS:
            objects = landing.list_dataset(dataset, client)
            warehouse.load_dataset(dataset, objects, client, landing.bucket, "dbt-test", log)
        return warehouse


def test_the_first_dbt_build_passes_every_model_and_test_on_snowflake(
    landing, snowflake_env, tmp_path
):
    """Emulator (fakesnow) standing in for Snowflake: seed, models, snapshot and tests pass."""
    warehouse = load_raw(landing, snowflake_env)
    env = {
        **os.environ,
        **warehouse.dbt_env(),
        "MOVIELENS_TARGET": "prod",
        "DO_NOT_TRACK": "1",
    }
    target = tmp_path / "target"
    build = subprocess.run(
        [
            str(BIN / "dbt"),
            "build",
            "--exclude-resource-type",
            "unit_test",
            "--profiles-dir",
            str(DBT_PROJECT),
            "--project-dir",
            str(DBT_PROJECT),
            "--target-path",
            str(target),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    results = json.loads((target / "run_results.json").read_text())["results"]
    failed = {
        result["unique_id"]: (result["status"], result["message"])
        for result in results
        if result["status"] not in ("success", "pass")
    }
    assert failed == {}, build.stdout[-5000:]
    assert build.returncode == 0

    manifest = json.loads((target / "manifest.json").read_text())
    built = Counter(result["unique_id"].split(".")[0] for result in results)
    expected = Counter(
        node["resource_type"]
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed", "snapshot", "test")
        and node["config"].get("materialized") != "ephemeral"
        and node["config"].get("enabled", True)
    )
    assert built == expected

    ratings = csv_rows(SAMPLE / "ratings.csv")
    with connect(snowflake_env) as connection:
        cursor = connection.cursor()
        fct = cursor.execute("select count(*), sum(rating) from MOVIELENS.DEV.FCT_RATINGS")
        assert fct.fetchall() == [
            (
                len({(row[0], row[1]) for row in ratings}),
                pytest.approx(sum(float(row[2]) for row in ratings)),
            )
        ]
        users = cursor.execute("select count(*) from MOVIELENS.DEV.DIM_USERS").fetchall()
        tags = csv_rows(SAMPLE / "tags.csv")
        assert users == [(len({row[0] for row in ratings} | {row[0] for row in tags}),)]


def dbt_log_of(target_root: Path, run_id: str) -> str:
    """dbt's own log of the one dbt invocation of a run (dagster-dbt names its folder so)."""
    (folder,) = [path for path in target_root.iterdir() if f"-{run_id[:7]}-" in path.name]
    return (folder / "dbt.log").read_text(errors="replace")


def test_a_second_run_keeps_dbts_partial_parse_and_each_run_tags_its_queries(
    landing, snowflake_env, fakesnow_server, tmp_path, monkeypatch
):
    """Emulator (fakesnow) standing in for Snowflake; the server records the query tags.

    The dbt step runs twice on the prod target, with two run ids: dbt's second invocation
    reuses its parse (the profile reads nothing that changes per run), and the server saw each
    node's queries tagged with the run's id. Only the models up to ``dim_movies`` run: a second
    run of incremental models and snapshots fails on fakesnow (module docstring).
    """
    load_raw(landing, snowflake_env)
    monkeypatch.setenv("MOVIELENS_TARGET", "prod")
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt-target"))
    monkeypatch.setenv("DBT_QUERY_TAG", "")  # the step sets it; restored after the test
    # no relationship tests towards models outside the selection (fct_ratings is not built)
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    assets = build_dbt_assets(Settings.from_env())
    selection = dg.AssetSelection.assets(
        dg.AssetKey(["dimensions", "dim_movies"])
    ).upstream() - dg.AssetSelection.key_prefixes("raw")
    with dg.instance_for_test() as instance:
        runs = []
        for _ in range(2):
            result = dg.materialize(
                [assets],
                selection=selection,
                instance=instance,
                resources={
                    "dbt": DbtCliResource(project_dir=movielens_project, target="prod"),
                    "warehouse": FakesnowWarehouse.from_settings(Settings.from_env()),
                },
            )
            assert result.success
            built = {
                str(event.materialization.metadata["unique_id"].value)
                for event in result.get_asset_materialization_events()
            }
            runs.append((result.run_id, built))

    first, second = (dbt_log_of(tmp_path / "dbt-target", run_id) for run_id, _ in runs)
    assert "Unable to do partial parsing because saved manifest not found" in first
    assert "Unable to do partial parsing" not in second
    assert "Partial parsing enabled: 0 files deleted, 0 files added, 0 files changed" in second

    tags = [
        json.loads(json.loads(line))
        for line in (tmp_path / QUERY_TAGS).read_text().splitlines()
        if line.strip() != "null"
    ]
    for run_id, built in runs:
        tagged = {tag.get("dbt_node") for tag in tags if tag.get("dagster_run_id") == run_id}
        assert "model.movielens_dbt.dim_movies" in built
        assert built <= tagged, f"run {run_id}: nodes without their run's query tag"
    assert {tag.get("app") for tag in tags} == {"movielens"}
    assert {tag.get("dagster_run_id") for tag in tags} == {run_id for run_id, _ in runs}
