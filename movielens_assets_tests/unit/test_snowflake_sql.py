"""The Snowflake statements the loader renders, checked as text and through a Snowflake parser.

No emulator here: these are pure functions. sqlglot's Snowflake dialect (the parser fakesnow
uses) reads each statement back, to show that odd S3 keys stay data and never change a statement.
"""

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.s3 import S3Object
from movielens_assets.settings import ConfigurationError
from movielens_assets.warehouse.base import VALUE_RULES, BadFileError
from movielens_assets.warehouse.snowflake import (
    DEFAULT_STAGE,
    LEDGER_DDL,
    MAX_FILES_PER_COPY,
    REJECTIONS_DDL,
    CopyResult,
    SnowflakeWarehouse,
    copy_error,
    copy_into_sql,
    copy_results,
    create_file_format_sql,
    create_stage_sql,
    create_storage_integration_sql,
    failed_file_error,
    files_clause,
    match_file,
    object_name,
    on_error_clause,
    parse_copy_error,
    query_tag,
    raw_table_ddl,
    rule_breaks_sql,
    rule_example_sql,
    rule_violation,
    stage_location,
    string_literal,
    unreported,
)

pytestmark = pytest.mark.snowflake

SETUP_SQL = Path(__file__).resolve().parents[2] / "snowflake" / "setup.sql"
LOADED_AT = datetime(2024, 5, 1, 12, 30, 15, 250000)
ODD_NAMES = [
    "it's; drop table x.csv",
    "ratings 2024 (final).csv",
    "évaluations – été 🎬.csv",
    "back\\slash.csv",
    "a\\'b.csv",
    "q?.csv",
    "tab\tand\nnewline.csv",
]


def parse_one(sql: str) -> exp.Expr:
    statements = sqlglot.parse(sql, dialect="snowflake")
    assert len(statements) == 1
    return statements[0]


def literal_of(literal_sql: str) -> str:
    return parse_one(f"select {literal_sql}").find(exp.Literal).this


def normalised(sql: str) -> str:
    return " ".join(sql.split()).lower()


@pytest.mark.parametrize("value", ODD_NAMES)
def test_a_string_literal_reads_back_as_exactly_the_value(value):
    assert literal_of(string_literal(value)) == value


def test_quotes_and_backslashes_are_escaped_and_unicode_is_kept():
    assert string_literal("it's; drop table x.csv") == "'it''s; drop table x.csv'"
    assert string_literal("back\\slash") == "'back\\\\slash'"
    assert string_literal("été 🎬") == "'été 🎬'"
    assert string_literal("a\nb") == "'a\\nb'"


def test_the_files_list_names_each_file_as_a_literal():
    assert files_clause(["ratings.csv", "it's; drop table x.csv", "a b.csv"]) == (
        "files = ('ratings.csv', 'it''s; drop table x.csv', 'a b.csv')"
    )


def test_the_files_list_takes_one_to_a_thousand_names():
    assert files_clause([f"{n}.csv" for n in range(MAX_FILES_PER_COPY)]).count("'") == 2000
    with pytest.raises(ValueError, match="at most 1000"):
        files_clause([f"{n}.csv" for n in range(MAX_FILES_PER_COPY + 1)])
    with pytest.raises(ValueError, match="at least one"):
        files_clause([])


def test_the_copy_statement_is_rendered_as_snowflake_wants_it():
    sql = copy_into_sql(
        DATASETS["ratings"],
        DEFAULT_STAGE,
        "ratings/",
        ["ratings.csv", "ratings-2024.csv"],
        LOADED_AT,
        key_prefix="landing/",
    )
    assert sql == (
        'copy into RAW.RAW_RATINGS ("USERID", "MOVIEID", "RATING", "TIMESTAMP", '
        '"_SOURCE_FILE", "_LOADED_AT")\n'
        "from (\n"
        "    select $1, $2, $3, $4, concat('landing/', metadata$filename), "
        "to_timestamp_ntz('2024-05-01 12:30:15.250000')\n"
        "    from @RAW.MOVIELENS_LANDING/ratings/\n"
        ")\n"
        "files = ('ratings.csv', 'ratings-2024.csv')\n"
        "file_format = (format_name = 'RAW.MOVIELENS_CSV')\n"
        "on_error = ABORT_STATEMENT"
    )


def test_odd_keys_cannot_change_the_copy_statement():
    sql = copy_into_sql(DATASETS["tags"], DEFAULT_STAGE, "tags", ODD_NAMES, LOADED_AT, "landing/")
    copy = parse_one(sql)
    assert isinstance(copy, exp.Copy)
    params = {param.this.name.lower(): param for param in copy.args["params"]}
    assert set(params) == {"files", "file_format", "on_error"}
    assert [literal.this for literal in params["files"].find_all(exp.Literal)] == ODD_NAMES
    assert copy.find(exp.Table).name == "RAW_TAGS"


def test_a_bucket_root_stage_loads_the_file_name_as_the_key():
    sql = copy_into_sql(DATASETS["movies"], DEFAULT_STAGE, "movies", ["m.csv"], LOADED_AT)
    assert "select $1, $2, $3, metadata$filename, to_timestamp_ntz(" in sql


@pytest.mark.parametrize(
    ("on_error", "rendered"),
    [
        ("abort", "on_error = ABORT_STATEMENT"),
        ("skip_file", "on_error = SKIP_FILE"),
        ("ABORT_STATEMENT", "on_error = ABORT_STATEMENT"),
    ],
)
def test_on_error_renders_snowflakes_option(on_error, rendered):
    assert on_error_clause(on_error) == rendered


def test_on_error_refuses_options_that_would_load_part_of_a_file():
    with pytest.raises(ConfigurationError, match="abort, skip_file"):
        on_error_clause("continue")
    with pytest.raises(ConfigurationError):
        on_error_clause("abort_statement; drop table x")


def test_the_stage_location_names_the_dataset_folder():
    assert stage_location("raw.movielens_landing", "ratings") == "@RAW.MOVIELENS_LANDING/ratings/"
    assert stage_location("MOVIELENS.RAW.LANDING", "/a/b=1/") == "@MOVIELENS.RAW.LANDING/a/b=1/"
    assert stage_location(DEFAULT_STAGE) == "@RAW.MOVIELENS_LANDING/"


@pytest.mark.parametrize("path", ["rat ings", "ratings'; drop", "été"])
def test_a_stage_path_outside_plain_characters_is_refused(path):
    with pytest.raises(ConfigurationError, match="MOVIELENS_S3_PREFIX"):
        stage_location(DEFAULT_STAGE, path)


@pytest.mark.parametrize("name", ["RAW.STAGE; drop table x", "a.b.c.d", '"RAW"."S"', "", "RAW."])
def test_object_names_from_configuration_must_be_plain_identifiers(name):
    with pytest.raises(ConfigurationError):
        object_name(name)


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


def test_raw_tables_are_created_if_missing_and_never_replaced():
    ddl = raw_table_ddl(DATASETS["links"])
    assert ddl == (
        "create table if not exists RAW.RAW_LINKS (\n"
        '    "MOVIEID" number(38,0),\n'
        '    "IMDBID" varchar,\n'
        '    "TMDBID" number(38,0),\n'
        '    "_SOURCE_FILE" varchar,\n'
        '    "_LOADED_AT" timestamp_ntz\n'
        ")"
    )


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


SNOWFLAKE_ABORT = (
    "100038 (22018): Numeric value 'four' is not recognized\n"
    "  File 'ratings/ratings-2024.csv', line 3, character 9\n"
    '  Row 2, column "RAW_RATINGS"["$3":3]\n'
    "  If you would like to continue loading when an error is encountered, use other values "
    "such as 'SKIP_FILE' or 'CONTINUE' for the ON_ERROR option. For more information on "
    "loading options, please run 'info loading_data' in a SQL client."
)


def test_an_aborted_copy_names_the_file_line_and_column():
    detail = parse_copy_error(SNOWFLAKE_ABORT)
    assert (detail.problem, detail.file, detail.line, detail.character, detail.column) == (
        "Numeric value 'four' is not recognized",
        "ratings/ratings-2024.csv",
        3,
        9,
        "$3 (field 3)",
    )


def test_an_aborted_copy_becomes_a_bad_file_error_with_a_hint():
    from snowflake.connector.errors import ProgrammingError

    objects = [
        S3Object("landing/ratings/ratings.csv", "e1", 10),
        S3Object("landing/ratings/ratings-2024.csv", "e2", 10),
    ]
    error = ProgrammingError(msg=SNOWFLAKE_ABORT, errno=100038, sfqid="01b2-query")
    bad = copy_error(error, objects, DATASETS["ratings"])
    assert isinstance(bad, BadFileError)
    assert bad.key == "landing/ratings/ratings-2024.csv"
    assert (bad.line, bad.column) == (3, "$3 (field 3), character 9")
    assert "Numeric value 'four' is not recognized" in str(bad)
    # VALIDATE() does not support a COPY with a transformation, so the hint names the query.
    assert "Snowflake query id: 01b2-query." in str(bad) and "validate(" not in str(bad)


def test_copy_results_are_matched_to_their_s3_objects():
    objects = [
        S3Object("landing/ratings/a.csv", "e1", 1),
        S3Object("landing/ratings/it's; b.csv", "e2", 1),
    ]
    assert match_file("s3://bucket/landing/ratings/it's; b.csv", objects) is objects[1]
    assert match_file("movielens_landing/ratings/a.csv", objects) is objects[0]
    assert match_file("s3://bucket/landing/ratings/c.csv", objects) is None
    results = [CopyResult("s3://bucket/landing/ratings/a.csv", "LOADED", 2, 2, 0)]
    assert unreported(results, objects) == [objects[1]]


class FakeCursor:
    """A cursor after a COPY, with Snowflake's result columns."""

    def __init__(self):
        names = (
            "file",
            "status",
            "rows_parsed",
            "rows_loaded",
            "error_limit",
            "errors_seen",
            "first_error",
            "first_error_line",
            "first_error_character",
            "first_error_column_name",
        )
        self.description = [(name,) for name in names]

    def fetchall(self):
        return [("s3://b/landing/tags/t.csv", "loaded", 5, 5, 1, 0, None, None, None, None)]


def test_copy_results_are_read_by_column_name():
    assert copy_results(FakeCursor()) == [
        CopyResult("s3://b/landing/tags/t.csv", "LOADED", 5, 5, 0, None, None, None)
    ]


def test_the_query_tag_is_json_with_the_run_and_asset():
    tag = query_tag("8c1d-run", "raw/raw_ratings")
    assert json.loads(tag) == {
        "app": "movielens",
        "tool": "dagster",
        "dagster_run_id": "8c1d-run",
        "asset": "raw/raw_ratings",
    }


def test_sessions_send_the_tag_and_endpoint_overrides_at_login():
    warehouse = SnowflakeWarehouse(
        account="acct",
        user="u",
        password="p",  # noqa: S106 - a placeholder, never sent anywhere
        host="localhost",
        port=8080,
        protocol="http",
    )
    resource = warehouse.snowflake_resource('{"app":"movielens"}')
    assert resource.additional_snowflake_connection_args == {
        "session_parameters": {"QUERY_TAG": '{"app":"movielens"}'},
        "host": "localhost",
        "port": 8080,
        "protocol": "http",
    }
    assert (resource.role, resource.database, resource.paramstyle) == (
        "LOADER",
        "MOVIELENS",
        "qmark",
    )


def test_the_rejections_table_has_the_columns_the_checks_read():
    assert REJECTIONS_DDL.startswith("create table if not exists RAW.LOAD_REJECTIONS (")
    columns = re.findall(r'^    "(\w+)"', REJECTIONS_DDL, re.MULTILINE)
    assert columns == [
        "DATASET",
        "S3_KEY",
        "ETAG",
        "ERROR",
        "LINE",
        "COLUMN_NAME",
        "ON_ERROR",
        "RUN_ID",
        "REJECTED_AT",
    ]


def test_value_rules_are_checked_per_file_on_the_rows_of_one_copy_with_keys_bound():
    sql = rule_breaks_sql(DATASETS["ratings"], 2)
    assert sql == (
        'select "_SOURCE_FILE", sum(case when coalesce("RATING" between 0.5 and 5.0 and '
        '"RATING" * 2 = round("RATING" * 2), false) then 0 else 1 end)\n'
        "from RAW.RAW_RATINGS\n"
        'where "_LOADED_AT" = ? and "_SOURCE_FILE" in (?, ?)\n'
        '    and not (coalesce("RATING" between 0.5 and 5.0 and "RATING" * 2 = '
        'round("RATING" * 2), false))\n'
        'group by "_SOURCE_FILE"'
    )
    example = rule_example_sql(DATASETS["genome_scores"], VALUE_RULES["genome_scores"][0])
    assert example == (
        'select "MOVIEID", "TAGID", "RELEVANCE"\n'
        "from RAW.RAW_GENOME_SCORES\n"
        'where "_LOADED_AT" = ? and "_SOURCE_FILE" = ?\n'
        '    and not (coalesce("RELEVANCE" between 0 and 1, false))\n'
        "limit 1"
    )
    for statement in (sql, example):
        assert isinstance(parse_one(statement), exp.Select)


def test_a_rule_violation_names_the_key_column_rule_and_a_hint_but_no_line():
    rule = VALUE_RULES["ratings"][0]
    error = rule_violation(
        DATASETS["ratings"], rule, "landing/ratings/r.csv", 3, (1, 2, 7.5, 964982703)
    )
    assert (error.key, error.line, error.column) == ("landing/ratings/r.csv", None, "rating")
    assert str(error) == (
        "landing/ratings/r.csv, column rating: rating is 7.5, but must be a star rating from "
        "0.5 to 5.0 in steps of 0.5 (3 rows break this rule; this is one of them); the row "
        "reads: 1,2,7.5,964982703. RAW only takes valid ratings: correct or drop the rows that "
        "break the rule. Nothing of this file was loaded. Fix the file and land it again (a new "
        "file, or the same key with new content)."
    )


def test_a_file_a_skip_file_copy_failed_is_reported_with_snowflakes_first_error():
    obj = S3Object("landing/ratings/bad.csv", "e9", 10)
    result = CopyResult(
        "s3://b/landing/ratings/bad.csv",
        "LOAD_FAILED",
        2,
        0,
        1,
        "Numeric value 'four' is not recognized",
        3,
        '"RAW_RATINGS"["$3":3]',
    )
    error = failed_file_error(result, obj, DATASETS["ratings"], "01b3-query")
    assert (error.key, error.line, error.column) == (obj.key, 3, "$3 (field 3)")
    assert "is not a valid ratings CSV: Numeric value 'four' is not recognized" in str(error)
    assert str(error).endswith("Snowflake query id: 01b3-query.")
