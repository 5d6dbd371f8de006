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
``fct_ratings`` and ``fct_genome_scores`` (incremental, strategy ``merge``) and the snapshot
``snap_tags`` stop with "001003 (42000): Parser Error: TEMPORARY table names can *only* use
the "temp" catalog", and the 24 tests and models downstream of them are skipped. On a rerun,
dbt-snowflake first stages the new rows in ``create or replace temporary table
MOVIELENS.DEV.<name>__dbt_tmp``; DuckDB keeps temporary tables in its own ``temp`` catalog and
refuses a database-qualified name, and fakesnow passes the name through. The step after it,
which this project never reaches on fakesnow, is a ``MERGE`` inside ``begin ... commit`` that
writes to two DuckDB catalogs (FIELD-NOTES: DuckDB refuses such a multi-database transaction,
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

from movielens_assets.datasets import DATASETS
from movielens_assets.lib import s3 as s3lib
from movielens_assets.settings import PROJECT_ROOT, Settings
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

SERVER = f"""
import sys

from fakesnow.copy_into import ReadCSV
from sqlglot import exp

{inspect.getsource(with_quote_escape)}

ReadCSV.read_expression = with_quote_escape(ReadCSV.read_expression)

import fakesnow.cli

sys.exit(fakesnow.cli.main(["-s", "-p", sys.argv[1]]))
"""
"""``fakesnow -s -p PORT`` with the test-only quote-escape patch applied in the server (its
source copied in, so the server does not import this project and starts in under a second)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            env={**os.environ, "TMPDIR": str(tmp_path)},
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


def load_raw(landing, env: dict[str, str]) -> FakesnowWarehouse:
    """Land the sample in S3 and load every dataset through the server with the loader."""
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
