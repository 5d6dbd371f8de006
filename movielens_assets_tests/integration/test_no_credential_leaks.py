"""No credential in logs, metadata or errors: run with distinctive fake secrets, read it all back.

Every test sets secrets nobody else uses (AWS keys, a password in the S3 endpoint's URL, the
Snowflake password), runs real code with them, then reads back everything that was stored or
printed and looks for each secret: every event of the run as Dagster stores it (metadata, log
messages, errors with their causes), every file under the Dagster instance and ``MOVIELENS_HOME``
(event log databases, compute logs, dbt's logs, the warehouse), and stdout and stderr. Each test
also checks that it read something real (the metadata or the error it expects), so it cannot
pass by reading nothing.

Real components: ``movielens run`` in a subprocess (loopback S3 from moto, a DuckDB file, dbt
through dagster-dbt, a Dagster instance on disk); the landing sensor; the RAW assets on
fakesnow (a Snowflake emulator) and on the real Snowflake connector against a loopback server
that refuses the login as Snowflake does.
"""

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.raw.assets import build_raw_assets
from movielens_assets.lib.asset_keys import raw_key
from movielens_assets.lib.redact import RedactedError
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import PROJECT_ROOT, Settings
from movielens_assets.warehouse.snowflake import SnowflakeWarehouse
from movielens_assets_tests.conftest import SAMPLE
from movielens_assets_tests.integration.test_sensors import LandingSensor
from movielens_assets_tests.integration.test_snowflake_loader import (  # noqa: F401 (fake_snowflake: a fixture)
    FakesnowWarehouse,
    csv_bytes,
    fake_snowflake,
    land,
)

DBT_PROJECT_DIR = PROJECT_ROOT / "movielens_dbt"
TOKEN = uuid.uuid4().hex[:12]
AWS_SECRETS = {
    "AWS_ACCESS_KEY_ID": f"AKIALEAKTEST{TOKEN.upper()}",
    "AWS_SECRET_ACCESS_KEY": f"aws-secret-key-{TOKEN}",
    "AWS_SESSION_TOKEN": f"aws-session-token-{TOKEN}",
}
"""Fake AWS credentials: moto accepts any. Even the key id (not a secret) must not show up."""
ENDPOINT_PASSWORD = f"endpoint-password-{TOKEN}"
SNOWFLAKE_PASSWORD = f"snowflake-password-{TOKEN}"
SECRETS = [*AWS_SECRETS.values(), ENDPOINT_PASSWORD, SNOWFLAKE_PASSWORD]


def with_password(url: str) -> str:
    """``http://host:port`` with ``loader:<ENDPOINT_PASSWORD>@`` as its userinfo."""
    return url.replace("://", f"://loader:{ENDPOINT_PASSWORD}@", 1)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stored_by_dagster(instance: dg.DagsterInstance) -> str:
    """Every run record and every event of every run, serialized as Dagster stores them."""
    parts = []
    for run in instance.get_runs():
        parts.append(dg.serialize_value(run))
        parts.extend(dg.serialize_value(entry) for entry in instance.all_logs(run.run_id))
    return "\n".join(parts)


def files_under(*roots: Path, since: float = 0.0) -> Iterator[Path]:
    """Every file under ``roots`` modified at or after ``since``."""
    for root in roots:
        for path in root.rglob("*") if root.exists() else ():
            if path.is_file() and path.stat().st_mtime >= since:
                yield path


def assert_no_secret(where: str, text: str | bytes) -> None:
    """No secret in ``text``; the failure names where it was found."""
    data = text.encode() if isinstance(text, str) else text
    found = [secret for secret in SECRETS if secret.encode() in data]
    assert not found, f"{found} found in {where}"


def assert_no_secret_in_files(paths: list[Path]) -> None:
    for path in paths:
        assert_no_secret(str(path), path.read_bytes())


def movielens_run(home: Path, endpoint: str, *extra_env: tuple[str, str]) -> subprocess.Popen:
    """``movielens run`` with the fake secrets and an endpoint URL holding a password."""
    # as from a fresh shell: this process's imports set MOVIELENS_DUCKDB_PATH, DBT_TARGET_PATH
    inherited = ("AWS_", "DAGSTER_", "DBT_", "MOVIELENS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
    env.update(AWS_SECRETS)
    env.update(
        MOVIELENS_HOME=str(home),
        MOVIELENS_S3_BUCKET=f"test-secrets-{TOKEN}",
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        DO_NOT_TRACK="1",
    )
    env.update(dict(extra_env))
    # absolute: a run that reaches dbt leaves the process in the dbt project's folder
    summary_json = str(home / "summary.json")
    return subprocess.run(
        [sys.executable, "-m", "movielens_assets.tools.cli", "run", "--summary-json", summary_json],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.e2e
def test_a_whole_movielens_run_leaves_no_credential_in_events_logs_or_files(s3_server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    started = time.time()

    result = movielens_run(home, with_password(s3_server))

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        stored = stored_by_dagster(instance)
    # the run really stored metadata and logs: the RAW load's and dbt's
    assert '"rows_loaded"' in stored and '"s3_uri"' in stored
    assert "ratings: loading file 1/1" in stored and "fct_ratings" in stored
    files = list(files_under(home))
    files += files_under(DBT_PROJECT_DIR / "target", DBT_PROJECT_DIR / "logs", since=started)
    assert any(path.name == "dbt.log" for path in files), "no dbt log was read"
    assert any(path.suffix == ".db" for path in files), "no event log database was read"
    assert_no_secret("stdout", result.stdout)
    assert_no_secret("stderr", result.stderr)
    assert_no_secret("the Dagster event log", stored)
    assert_no_secret_in_files(files)


@pytest.mark.e2e
def test_an_unreachable_s3_fails_the_run_naming_the_endpoint_without_its_password(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = closed_port()

    result = movielens_run(
        home, with_password(f"http://127.0.0.1:{port}"), ("AWS_MAX_ATTEMPTS", "1")
    )

    assert result.returncode == 1
    summary = json.loads((home / "summary.json").read_text())
    assert any(
        f"http://loader:***@127.0.0.1:{port}/" in error and "Could not connect" in error
        for error in summary["errors"]
    ), summary["errors"]
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        stored = stored_by_dagster(instance)
    assert f"loader:***@127.0.0.1:{port}" in stored  # the step failure, as stored
    assert_no_secret("stdout", result.stdout)
    assert_no_secret("stderr", result.stderr)
    assert_no_secret("the Dagster event log", stored)
    assert_no_secret_in_files(list(files_under(home)))


def test_a_sensor_tick_that_cannot_reach_s3_fails_without_the_endpoint_password(
    tmp_path, monkeypatch
):
    """The real landing sensor; the daemon stores a failed tick's error with its causes."""
    port = closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", with_password(f"http://127.0.0.1:{port}"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    landing_sensor = LandingSensor(LandingBucket(bucket="movielens", prefix="landing"), tmp_path)

    with pytest.raises(RedactedError) as raised:
        landing_sensor.tick()

    stored = "".join(traceback.format_exception(raised.value))
    assert f"http://loader:***@127.0.0.1:{port}/movielens" in stored
    assert_no_secret("the tick's error", stored)


# The Snowflake path


def materialize_raw(landing, warehouse, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The RAW assets of ratings, as a run of the prod code location would execute them."""
    return dg.materialize(
        [build_raw_assets(Settings.from_env({"MOVIELENS_TARGET": "prod"}))],
        selection=[raw_key("ratings")],
        resources={"s3": landing, "warehouse": warehouse},
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.snowflake
@pytest.mark.usefixtures("fake_snowflake")
def test_snowflake_loads_and_a_failed_copy_keep_every_credential_out_of_events_and_logs(
    landing, monkeypatch, tmp_path, capfd
):
    """Emulator (fakesnow) standing in for Snowflake; the S3 endpoint URL carries a password."""
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", SNOWFLAKE_PASSWORD)
    for name, value in AWS_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", with_password(os.environ["AWS_ENDPOINT_URL_S3"]))
    header = list(DATASETS["ratings"].header)
    land(landing, "ratings", SAMPLE / "ratings.csv", "ratings.csv")
    instance_dir = tmp_path / "dagster"
    instance_dir.mkdir()

    with dg.DagsterInstance.local_temp(str(instance_dir)) as instance:
        loaded = materialize_raw(landing, FakesnowWarehouse.from_env(), instance)
        bad = [header, ["1", "1", "4.0", "964982703"], ["1", "3", "four", "964981247"]]
        bad_key = land(landing, "ratings", csv_bytes(bad), "ratings-2024.csv")
        failed = materialize_raw(landing, FakesnowWarehouse.from_env(), instance)
        stored = stored_by_dagster(instance)

    assert loaded.success and not failed.success
    assert '"copy_results"' in stored and "landing/ratings/ratings.csv loaded" in stored
    assert f"{bad_key}" in stored and "is not a valid ratings CSV" in stored  # the failed COPY
    output = capfd.readouterr()
    assert_no_secret("stdout", output.out)
    assert_no_secret("stderr", output.err)
    assert_no_secret("the Dagster event log", stored)
    assert_no_secret_in_files(list(files_under(instance_dir)))


class RefusingLogin(BaseHTTPRequestHandler):
    """Answers every Snowflake login as Snowflake does a wrong password, and keeps the requests
    (the connector gzips them)."""

    received: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
        answer = json.dumps(
            {
                "data": {"nextAction": None},
                "code": "390100",
                "message": "Incorrect username or password was specified.",
                "success": False,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def refusing_snowflake() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback HTTP server refusing Snowflake logins; yields its port and received bodies."""
    received: list[bytes] = []
    handler = type("Handler", (RefusingLogin,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, received
    server.shutdown()
    server.server_close()


@pytest.mark.snowflake
def test_a_refused_snowflake_login_fails_the_run_without_the_password(
    landing, refusing_snowflake, monkeypatch, tmp_path, capfd
):
    """The real Snowflake connector, through dagster-snowflake, against a refusing server."""
    port, received = refusing_snowflake
    for name, value in {
        "SNOWFLAKE_ACCOUNT": "acme",
        "SNOWFLAKE_USER": "loader",
        "SNOWFLAKE_PASSWORD": SNOWFLAKE_PASSWORD,
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": str(port),
        "SNOWFLAKE_PROTOCOL": "http",
    }.items():
        monkeypatch.setenv(name, value)
    instance_dir = tmp_path / "dagster"
    instance_dir.mkdir()

    with dg.DagsterInstance.local_temp(str(instance_dir)) as instance:
        result = materialize_raw(landing, SnowflakeWarehouse.from_env(), instance)
        stored = stored_by_dagster(instance)

    assert not result.success
    assert any(SNOWFLAKE_PASSWORD.encode() in body for body in received)  # it was really sent
    assert "Incorrect username or password was specified" in stored  # the stored failure
    output = capfd.readouterr()
    assert_no_secret("stdout", output.out)
    assert_no_secret("stderr", output.err)
    assert_no_secret("the Dagster event log", stored)
    assert_no_secret_in_files(list(files_under(instance_dir)))
