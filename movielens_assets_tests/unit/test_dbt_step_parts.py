"""The dbt step's pure parts: reading the post-hook's metadata line, and a retry's dbt arguments."""

import json

import dagster as dg

from movielens_assets.defs.dbt.events import METADATA_PREFIX, parse_metadata_line, table_metadata
from movielens_assets.defs.dbt.retry import retry_args


def test_the_post_hooks_line_becomes_row_count_and_column_schema():
    line = METADATA_PREFIX + json.dumps(
        {"row_count": 9742, "columns": [{"name": "movie_id", "type": "integer"}]}
    )
    metadata = table_metadata(parse_metadata_line(line))
    assert metadata["dagster/row_count"] == dg.MetadataValue.int(9742)
    schema = metadata["dagster/column_schema"].value
    assert [(column.name, column.type) for column in schema.columns] == [("movie_id", "integer")]


def test_other_log_lines_and_broken_payloads_are_not_metadata():
    assert parse_metadata_line("1 of 9 START sql view model dev.src_movies") is None
    assert parse_metadata_line(METADATA_PREFIX + "{not json") is None
    assert parse_metadata_line(METADATA_PREFIX + "[1, 2]") is None
    assert parse_metadata_line('{"row_count": 1}') is None  # dagster-dbt's own format, not ours


def node(unique_id: str, *fqn: str) -> dict:
    return {"resource_type": unique_id.split(".")[0], "name": fqn[-1], "fqn": list(fqn)}


MANIFEST = {
    "nodes": {
        "model.p.a": node("model.p.a", "p", "staging", "a"),
        "model.p.b": node("model.p.b", "p", "marts", "b"),
        "test.p.not_null_a": node("test.p.not_null_a", "p", "staging", "not_null_a"),
        "test.p.unique_a": node("test.p.unique_a", "p", "staging", "unique_a"),
        "test.p.not_null_b": node("test.p.not_null_b", "p", "marts", "not_null_b"),
    }
}


def test_a_first_run_builds_everything():
    assert retry_args(MANIFEST, [], ["not_null_a"]) == []


def test_a_retry_leaves_out_what_was_done_and_selects_the_tests_left():
    # a was built and one of its tests passed; the other failed, so b was skipped
    done = ["model.p.a", "test.p.not_null_a"]
    checks = ["not_null_a", "unique_a", "not_null_b"]
    assert retry_args(MANIFEST, done, checks) == [
        "--indirect-selection",
        "empty",
        "--select",
        "fqn:p.marts.not_null_b fqn:p.staging.unique_a",
        "--exclude",
        "fqn:p.staging.a fqn:p.staging.not_null_a",
    ]


def test_a_retry_runs_no_test_the_step_did_not_select():
    args = retry_args(MANIFEST, ["model.p.a"], ["not_null_b"])
    assert args[args.index("--select") + 1] == "fqn:p.marts.not_null_b"
