"""The Snowflake statements the loader renders, checked as text and through a Snowflake parser.

No emulator here: these are pure functions (``warehouse/snowflake/quoting.py`` and ``sql.py``).
sqlglot's Snowflake dialect (the parser fakesnow uses) reads each statement back, to show that
odd S3 keys stay data and never change a statement.
"""

import re
from datetime import datetime

import pytest
import sqlglot
from sqlglot import exp

from movielens_assets.datasets import DATASETS
from movielens_assets.settings import ConfigurationError
from movielens_assets.warehouse.base import VALUE_RULES
from movielens_assets.warehouse.snowflake.quoting import object_name, stage_location, string_literal
from movielens_assets.warehouse.snowflake.sql import (
    DEFAULT_STAGE,
    MAX_FILES_PER_COPY,
    REJECTIONS_DDL,
    copy_into_sql,
    files_clause,
    on_error_clause,
    raw_table_ddl,
    rule_breaks_sql,
    rule_example_sql,
)

pytestmark = pytest.mark.snowflake


ODD_NAMES = [
    "it's; drop table x.csv",
    "ratings 2024 (final).csv",
    "évaluations – été 🎬.csv",
    "back\\slash.csv",
    "a\\'b.csv",
    "q?.csv",
    "tab\tand\nnewline.csv",
]


LOADED_AT = datetime(2024, 5, 1, 12, 30, 15, 250000)


def parse_one(sql: str) -> exp.Expr:
    statements = sqlglot.parse(sql, dialect="snowflake")
    assert len(statements) == 1
    return statements[0]


def literal_of(literal_sql: str) -> str:
    return parse_one(f"select {literal_sql}").find(exp.Literal).this


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
