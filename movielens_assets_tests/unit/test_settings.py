import ast
import re
from pathlib import Path

import dagster as dg
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.settings import PROJECT_ROOT, ConfigurationError, Settings
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse


def test_defaults_need_no_configuration():
    settings = Settings.from_env({})
    assert settings.home == PROJECT_ROOT / ".movielens"
    assert settings.duckdb_path.name == "warehouse.duckdb"
    assert (settings.target, settings.bucket, settings.prefix) == ("local", "movielens", "landing")
    assert settings.s3_endpoint is None
    assert settings.warehouse_kind == "duckdb"


def test_the_environment_overrides_every_default(tmp_path: Path):
    settings = Settings.from_env(
        {
            "MOVIELENS_HOME": str(tmp_path),
            "MOVIELENS_TARGET": "PROD",
            "MOVIELENS_S3_BUCKET": "my-bucket",
            "MOVIELENS_S3_PREFIX": "/incoming/",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
            "MOVIELENS_DATA_DIR": str(tmp_path / "data"),
            "MOVIELENS_SENSOR_INTERVAL": "7",
        }
    )
    assert settings.home == tmp_path
    assert settings.dagster_home == tmp_path / "dagster"
    assert (settings.target, settings.warehouse_kind) == ("prod", "snowflake")
    assert (settings.bucket, settings.prefix) == ("my-bucket", "incoming")
    assert settings.s3_endpoint == "http://127.0.0.1:9"
    assert settings.data_dir == tmp_path / "data"
    assert settings.sample_dir == tmp_path / "sample" / "ml-latest-small"
    assert (settings.sensor_interval, settings.sensor_running) == (7, False)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MOVIELENS_TARGET", "staging", "not one of local, prod"),
        ("MOVIELENS_SENSOR_INTERVAL", "0", "whole number of seconds >= 1"),
        ("MOVIELENS_SENSOR_DEFAULT", "paused", "not 'running' or 'stopped'"),
        ("MOVIELENS_SQS_WAIT_SECONDS", "21", "more than SQS allows"),
        ("MOVIELENS_SQS_WAIT_SECONDS", "soon", "not a whole number >= 0"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(name, value, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value)


def on_error(environ: dict[str, str]) -> dict[str, str]:
    return Settings.from_env(environ).on_error


def test_on_error_is_read_from_the_environment_per_dataset():
    assert set(on_error({}).values()) == {"abort"}
    modes = on_error(
        {"MOVIELENS_ON_ERROR": "skip_file", "MOVIELENS_ON_ERROR_GENOME_SCORES": "ABORT_STATEMENT"}
    )
    assert modes == dict.fromkeys(DATASETS, "skip_file") | {"genome_scores": "abort"}
    assert on_error({"MOVIELENS_ON_ERROR_RATINGS": " Skip_File "})["ratings"] == "skip_file"
    with pytest.raises(ConfigurationError, match="MOVIELENS_ON_ERROR='continue' is not one of"):
        on_error({"MOVIELENS_ON_ERROR": "continue"})
    with pytest.raises(ConfigurationError, match="MOVIELENS_ON_ERROR_RATING names no dataset"):
        on_error({"MOVIELENS_ON_ERROR_RATING": "skip_file"})
    settings = Settings.from_env({"MOVIELENS_ON_ERROR_TAGS": "skip_file"})
    warehouse = DuckDBWarehouse.from_settings(settings)
    assert [warehouse.on_error_for(name) for name in ("tags", "movies")] == ["skip_file", "abort"]
    assert warehouse.path == str(settings.duckdb_path)


SNOWFLAKE_LOGIN = {"SNOWFLAKE_ACCOUNT": "acme", "SNOWFLAKE_USER": "loader"}


def test_snowflake_settings_keep_which_secrets_are_set_but_never_their_values():
    settings = Settings.from_env({**SNOWFLAKE_LOGIN, "SNOWFLAKE_PASSWORD": "hunter2-not-real"})
    assert settings.snowflake.secrets_set == {
        "SNOWFLAKE_ACCOUNT",
        "SNOWFLAKE_USER",
        "SNOWFLAKE_PASSWORD",
    }
    assert "hunter2-not-real" not in repr(settings) and "acme" not in repr(settings)
    secrets = settings.snowflake.connection_secrets()
    assert secrets == {
        "account": "SNOWFLAKE_ACCOUNT",
        "user": "SNOWFLAKE_USER",
        "password": "SNOWFLAKE_PASSWORD",
    }
    assert all(isinstance(value, dg.EnvVar) for value in secrets.values())


def test_a_key_pair_is_passed_as_its_path_and_passphrase_variables():
    settings = Settings.from_env(
        {
            **SNOWFLAKE_LOGIN,
            "SNOWFLAKE_PRIVATE_KEY_PATH": "/keys/loader.p8",
            "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "not-real",
        }
    )
    secrets = settings.snowflake.connection_secrets()
    assert (secrets["private_key_path"], secrets["private_key_passphrase"]) == (
        "SNOWFLAKE_PRIVATE_KEY_PATH",
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
    )
    assert "password" not in secrets


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "needs SNOWFLAKE_ACCOUNT and SNOWFLAKE_USER; see .env.example"),
        ({"SNOWFLAKE_ACCOUNT": "acme"}, "needs SNOWFLAKE_USER; see .env.example"),
        (SNOWFLAKE_LOGIN, "needs SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH"),
        (
            {**SNOWFLAKE_LOGIN, "SNOWFLAKE_PASSWORD": "x", "SNOWFLAKE_PRIVATE_KEY_PATH": "/k"},
            "Set SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH, not both",
        ),
    ],
)
def test_missing_snowflake_credentials_name_the_variables_to_set(environ, message):
    snowflake = Settings.from_env({"MOVIELENS_TARGET": "prod", **environ}).snowflake
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        snowflake.connection_secrets()


def test_the_stage_prefix_follows_the_landing_prefix_unless_set():
    assert Settings.from_env({}).snowflake.stage_key_prefix == "landing/"
    assert Settings.from_env({"MOVIELENS_S3_PREFIX": "/in/coming/"}).snowflake.stage_key_prefix == (
        "in/coming/"
    )
    root = {"MOVIELENS_S3_PREFIX": "incoming", "MOVIELENS_SNOWFLAKE_STAGE_PREFIX": ""}
    assert Settings.from_env(root).snowflake.stage_key_prefix == ""


def test_snowflake_overrides_are_read_and_a_bad_port_names_the_variable():
    snowflake = Settings.from_env(
        {
            "SNOWFLAKE_HOST": "localhost",
            "SNOWFLAKE_PORT": "8080",
            "SNOWFLAKE_PROTOCOL": "http",
            "SNOWFLAKE_DATABASE": "ANALYTICS",
            "MOVIELENS_SNOWFLAKE_LOADER_ROLE": "INGEST",
            "MOVIELENS_SNOWFLAKE_STAGE": "RAW.OTHER_STAGE",
        }
    ).snowflake
    assert (snowflake.host, snowflake.port, snowflake.protocol) == ("localhost", 8080, "http")
    assert (snowflake.database, snowflake.loader_role, snowflake.stage) == (
        "ANALYTICS",
        "INGEST",
        "RAW.OTHER_STAGE",
    )
    assert Settings.from_env({}).snowflake.warehouse is None
    with pytest.raises(ConfigurationError, match="SNOWFLAKE_PORT='80a' must be a port number"):
        Settings.from_env({"SNOWFLAKE_PORT": "80a"})


def test_the_warehouse_reads_the_environment_only_through_settings():
    """No module of ``warehouse/`` touches ``os.environ`` or ``os.getenv``: settings.py does."""
    readers = []
    for path in sorted((PROJECT_ROOT / "movielens_assets" / "warehouse").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "getenvb"}:
                readers.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                readers += [
                    f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}"
                    for alias in node.names
                    if alias.name in {"environ", "getenv", "getenvb"}
                ]
    assert readers == []
