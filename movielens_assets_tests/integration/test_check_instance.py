"""`movielens check-instance` against a real PostgreSQL: each bad configuration names what to set
or start, and the password never appears in what it prints."""

import os
import subprocess
import sys

import pytest

from movielens_assets_tests.postgres_cluster import Cluster, free_port, throwaway_cluster


@pytest.fixture(scope="module")
def cluster():
    with throwaway_cluster() as running:
        yield running


def check_instance(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PG_")}
    return subprocess.run(
        [sys.executable, "-m", "movielens_assets.tools.cli", "check-instance"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_reachable_instance_reports_its_server_and_schema(cluster: Cluster):
    result = check_instance(cluster.env())
    assert result.returncode == 0, result.stderr
    assert f"at 127.0.0.1:{cluster.port}, database 'dagster'" in result.stdout
    assert "run `dagster instance migrate` to create them" in result.stdout
    assert cluster.password not in result.stdout + result.stderr


def test_a_missing_variable_is_named(cluster: Cluster):
    env = cluster.env()
    del env["DAGSTER_PG_HOST"], env["DAGSTER_PG_DB"]
    result = check_instance(env)
    assert result.returncode == 1
    assert "DAGSTER_PG_HOST, DAGSTER_PG_DB are not set" in result.stderr
    assert cluster.password not in result.stdout + result.stderr


def test_a_wrong_password_names_the_variable_without_printing_either_password(cluster: Cluster):
    wrong = "not-the-" + cluster.password
    result = check_instance({**cluster.env(), "DAGSTER_PG_PASSWORD": wrong})
    assert result.returncode == 1
    assert "rejected the password of user 'postgres'" in result.stderr
    assert "set DAGSTER_PG_PASSWORD" in result.stderr
    output = result.stdout + result.stderr
    assert wrong not in output and cluster.password not in output


def test_a_server_that_is_not_running_is_named_with_its_address(cluster: Cluster):
    port = free_port()
    result = check_instance({**cluster.env(), "DAGSTER_PG_PORT": str(port)})
    assert result.returncode == 1
    assert f"PostgreSQL is not reachable at 127.0.0.1:{port}" in result.stderr
    assert "DAGSTER_PG_HOST, DAGSTER_PG_PORT" in result.stderr
    assert cluster.password not in result.stdout + result.stderr


def test_a_missing_database_says_how_to_create_it(cluster: Cluster):
    result = check_instance({**cluster.env(), "DAGSTER_PG_DB": "no_such_db"})
    assert result.returncode == 1
    assert "has no database 'no_such_db' (DAGSTER_PG_DB)" in result.stderr
    assert "createdb" in result.stderr
