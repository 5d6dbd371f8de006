"""The account objects ``snowflake/setup.sql`` creates: storage integration, file format, stage.

The loader never runs these: an administrator runs setup.sql once. They are rendered here so
that a test keeps setup.sql in step with what the loader expects (``test_snowflake_setup_sql.py``)
and so that the fakesnow tests create the same file format.
"""

from __future__ import annotations

from movielens_assets.settings import ConfigurationError
from movielens_assets.warehouse.snowflake.quoting import object_name, string_literal
from movielens_assets.warehouse.snowflake.sql import DEFAULT_FILE_FORMAT

CSV_FORMAT_OPTIONS: tuple[tuple[str, str], ...] = (
    ("type", "csv"),
    ("field_delimiter", "','"),
    ("skip_header", "1"),
    ("field_optionally_enclosed_by", "'\"'"),
    ("escape_unenclosed_field", "none"),
    ("null_if", "()"),
    ("empty_field_as_null", "true"),
    ("error_on_column_count_mismatch", "true"),
    ("encoding", "'UTF8'"),
    ("replace_invalid_characters", "false"),
    ("compression", "auto"),
)
"""The GroupLens CSV dialect as a Snowflake file format (``RAW.MOVIELENS_CSV``): comma
separated, one header line, fields optionally in double quotes with ``""`` inside, backslashes
kept as data (like DuckDB), an empty field is NULL, and a wrong column count or invalid UTF-8
is an error rather than silently repaired."""


def create_file_format_sql(name: str = DEFAULT_FILE_FORMAT) -> str:
    """``create file format if not exists`` for the GroupLens CSV dialect."""
    options = "\n    ".join(f"{option} = {value}" for option, value in CSV_FORMAT_OPTIONS)
    return f"create file format if not exists {object_name(name)}\n    {options}"


def create_storage_integration_sql(name: str, aws_role_arn: str, allowed_location: str) -> str:
    """An S3 storage integration: Snowflake assumes ``aws_role_arn``; no AWS key is stored."""
    if not allowed_location.startswith("s3://"):
        raise ConfigurationError(f"{allowed_location!r} is not an s3:// location.")
    return (
        f"create storage integration if not exists {object_name(name)}\n"
        "    type = external_stage\n"
        "    storage_provider = 'S3'\n"
        "    enabled = true\n"
        f"    storage_aws_role_arn = {string_literal(aws_role_arn)}\n"
        f"    storage_allowed_locations = ({string_literal(allowed_location)})"
    )


def create_stage_sql(
    name: str, url: str, storage_integration: str, file_format: str = DEFAULT_FILE_FORMAT
) -> str:
    """An external stage on the landing bucket that authenticates through the integration."""
    if not url.startswith("s3://"):
        raise ConfigurationError(f"{url!r} is not an s3:// URL.")
    return (
        f"create stage if not exists {object_name(name)}\n"
        f"    url = {string_literal(url.rstrip('/') + '/')}\n"
        f"    storage_integration = {object_name(storage_integration)}\n"
        f"    file_format = {object_name(file_format)}"
    )
