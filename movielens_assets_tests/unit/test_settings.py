from pathlib import Path

import pytest

from movielens_assets.settings import PROJECT_ROOT, ConfigurationError, Settings


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
    ],
)
def test_bad_values_name_the_variable_and_the_fix(name, value, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value)
