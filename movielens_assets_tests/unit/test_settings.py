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
            "MOVIELENS_RAW_FRESHNESS_HOURS": "1,2.5",
        }
    )
    assert settings.home == tmp_path
    assert settings.dagster_home == tmp_path / "dagster"
    assert (settings.target, settings.warehouse_kind) == ("prod", "snowflake")
    assert (settings.bucket, settings.prefix) == ("my-bucket", "incoming")
    assert settings.s3_endpoint == "http://127.0.0.1:9"
    assert settings.raw_freshness_hours == (1.0, 2.5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MOVIELENS_TARGET", "staging", "not one of local, prod"),
        ("MOVIELENS_MARTS_FRESHNESS_HOURS", "soon", "two numbers of hours"),
        ("MOVIELENS_MARTS_FRESHNESS_HOURS", "48,24", "warn <= fail"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(name, value, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value)
