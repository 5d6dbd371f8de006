"""The sample of failing rows on a failed dbt test's check, against a real DuckDB file."""

import json
import logging

import dagster as dg
import duckdb
import pytest

from movielens_assets.defs.dbt.failing_rows import (
    SAMPLE_KEY,
    markdown_table,
    sample_sql,
    with_failing_rows,
)
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse

# The shape of a compiled dbt test: a query returning the failing rows, ending in a comment.
TEST_SQL = """
with ratings as (
    select * from dev.ratings
)
select movie_id as from_field
from ratings
where movie_id > 100  -- unknown movies
"""


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema dev")
        connection.execute(
            "create table dev.ratings as select range as movie_id from range(95, 110)"
        )
    return DuckDBWarehouse(path=str(path), busy_timeout=1)


def check_result(unique_id: str, passed: bool) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=passed,
        asset_key="ratings",
        check_name=unique_id.split(".")[2],
        metadata={"unique_id": unique_id, "dagster_dbt/failed_row_count": 9},
    )


def run_results(tmp_path, compiled: dict[str, str]):
    results = [{"unique_id": uid, "compiled_code": sql} for uid, sql in compiled.items()]
    (tmp_path / "run_results.json").write_text(json.dumps({"results": results}))
    return tmp_path


def test_a_failed_checks_result_carries_at_most_five_of_its_rows(warehouse, tmp_path):
    target = run_results(tmp_path, {"test.p.unknown_movies.1": TEST_SQL, "test.p.ok.2": TEST_SQL})
    failed, passed = (
        check_result("test.p.unknown_movies.1", False),
        check_result("test.p.ok.2", True),
    )

    events = with_failing_rows([failed, passed], target, warehouse, logging.getLogger("t"))

    header, separator, *rows = events[0].metadata[SAMPLE_KEY].value.splitlines()
    assert header == "| from_field |" and separator == "|---|"
    assert len(rows) == 5
    assert all(101 <= int(row.strip("| ")) <= 109 for row in rows)  # 9 fail; ids 101..109
    assert events[0].metadata["dagster_dbt/failed_row_count"].value == 9
    assert SAMPLE_KEY not in events[1].metadata


def test_passing_checks_read_nothing(warehouse, tmp_path):
    passed = check_result("test.p.ok.2", True)

    # no run_results.json exists: reading it would warn
    events = with_failing_rows([passed], tmp_path, warehouse, logging.getLogger("t"))

    assert events == [passed]


def test_an_unreachable_warehouse_still_reports_the_check_with_a_warning(tmp_path, caplog):
    target = run_results(tmp_path, {"test.p.unknown_movies.1": TEST_SQL})
    failed = check_result("test.p.unknown_movies.1", False)
    missing = DuckDBWarehouse(path=str(tmp_path / "no-such-dir" / "x" / "warehouse.duckdb"))

    with caplog.at_level(logging.WARNING):
        events = with_failing_rows([failed], target, missing, logging.getLogger("t"))

    assert len(events) == 1 and not events[0].passed
    assert SAMPLE_KEY not in events[0].metadata
    assert "unknown_movies: no sample of the failing rows" in caplog.text


def test_a_trailing_comment_or_semicolon_does_not_swallow_the_limit():
    rows = duckdb.sql(sample_sql("select * from range(10) -- all of them;\n;", limit=3)).fetchall()

    assert rows == [(0,), (1,), (2,)]


def test_cells_are_one_line_with_pipes_escaped_and_nulls_named():
    table = markdown_table(["title", "year"], [("A | B\nC", None)])

    assert table.splitlines() == ["| title | year |", "|---|---|", "| A \\| B C | null |"]
