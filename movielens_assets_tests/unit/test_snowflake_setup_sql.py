"""``snowflake/setup.sql`` against the objects the loader renders (``setup_sql.py``, ``sql.py``).

No emulator here: the statements are pure functions and setup.sql is read as text.
"""

import re
from pathlib import Path

import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.settings import ConfigurationError
from movielens_assets.warehouse.snowflake.setup_sql import (
    create_file_format_sql,
    create_stage_sql,
    create_storage_integration_sql,
)
from movielens_assets.warehouse.snowflake.sql import (
    DEFAULT_STAGE,
    LEDGER_DDL,
    REJECTIONS_DDL,
    raw_table_ddl,
)

pytestmark = pytest.mark.snowflake


SETUP_SQL = Path(__file__).resolve().parents[2] / "snowflake" / "setup.sql"


def normalised(sql: str) -> str:
    return " ".join(sql.split()).lower()


def test_the_storage_integration_assumes_a_role_and_holds_no_keys():
    sql = create_storage_integration_sql(
        "movielens_s3", "arn:aws:iam::123456789012:role/read", "s3://bucket/landing/"
    )
    assert sql == (
        "create storage integration if not exists MOVIELENS_S3\n"
        "    type = external_stage\n"
        "    storage_provider = 'S3'\n"
        "    enabled = true\n"
        "    storage_aws_role_arn = 'arn:aws:iam::123456789012:role/read'\n"
        "    storage_allowed_locations = ('s3://bucket/landing/')"
    )
    with pytest.raises(ConfigurationError):
        create_storage_integration_sql("i", "arn", "https://bucket/")


def test_the_stage_uses_the_storage_integration_and_never_credentials():
    sql = create_stage_sql(DEFAULT_STAGE, "s3://bucket/landing", "movielens_s3")
    assert sql == (
        "create stage if not exists RAW.MOVIELENS_LANDING\n"
        "    url = 's3://bucket/landing/'\n"
        "    storage_integration = MOVIELENS_S3\n"
        "    file_format = RAW.MOVIELENS_CSV"
    )
    assert "credentials" not in sql and "aws_key_id" not in sql


def test_the_file_format_reads_quoted_fields_and_repairs_nothing():
    sql = create_file_format_sql()
    for option in (
        "skip_header = 1",
        "field_optionally_enclosed_by = '\"'",
        "escape_unenclosed_field = none",
        "error_on_column_count_mismatch = true",
        "replace_invalid_characters = false",
    ):
        assert option in sql
    assert sql.startswith("create file format if not exists RAW.MOVIELENS_CSV")


def test_setup_sql_holds_exactly_the_objects_the_loader_renders():
    setup = normalised(SETUP_SQL.read_text())
    location = "s3://&{landing_bucket}/&{landing_prefix}/"
    rendered = [
        create_storage_integration_sql("MOVIELENS_S3", "&{aws_role_arn}", location),
        create_file_format_sql(),
        create_stage_sql(DEFAULT_STAGE, location, "MOVIELENS_S3"),
        *(raw_table_ddl(dataset) for dataset in DATASETS.values()),
        LEDGER_DDL,
        REJECTIONS_DDL,
    ]
    for statement in rendered:
        assert normalised(statement) + ";" in setup


def test_setup_sql_is_idempotent_and_commits_no_secret():
    text = SETUP_SQL.read_text()
    statements = [s for s in re.sub(r"--[^\n]*", "", text).split(";") if s.strip()]
    creates = [normalised(s) for s in statements if normalised(s).startswith("create")]
    assert creates and all(" if not exists " in s for s in creates)
    assert "or replace" not in normalised(re.sub(r"--[^\n]*", "", text))
    assert re.findall(r"password = '([^']*)'", text) == ["&{dbt_password}", "&{loader_password}"]
    assert not re.search(r"aws_(secret|key_id)|credentials\s*=", text, re.IGNORECASE)


def grants_to(role: str) -> list[str]:
    lines = [normalised(line) for line in SETUP_SQL.read_text().splitlines()]
    return [
        line
        for line in lines
        if line.startswith("grant") and re.search(rf"to role {role}( |;)", line)
    ]


def test_setup_sql_grants_each_role_only_what_it_needs():
    loader = grants_to("loader")
    assert loader and not any(".dev" in grant or ".snapshots" in grant for grant in loader)
    assert "grant select, insert on future tables in schema movielens.raw to role loader;" in loader
    assert not any("integration" in grant or "ownership" in grant for grant in loader)
    transform = grants_to("transform")
    assert not any("insert" in grant for grant in transform)
    assert "grant ownership on schema movielens.dev to role transform copy current grants;" in (
        transform
    )
    deletes = [grant for grant in loader if grant.startswith("grant delete")]
    assert deletes == ["grant delete on table movielens.raw.load_rejections to role loader;"]
    reporter = grants_to("reporter")
    assert not any(word in grant for grant in reporter for word in (".raw", "ownership", "insert"))
    assert "grant select on future views in schema movielens.dev to role reporter;" in reporter
