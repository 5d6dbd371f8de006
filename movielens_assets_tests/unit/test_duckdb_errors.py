"""DuckDB's CSV errors explained as ``BadFileError``s (``warehouse/duckdb/errors.py``).

The errors are DuckDB's own: each bad file is read by an in-memory DuckDB with the loader's
strict ``read_csv`` (no warehouse file, no S3); the expected line is where the test wrote the
bad line.
"""

from pathlib import Path

import duckdb
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.warehouse.base import BadFileError, LoadError
from movielens_assets.warehouse.duckdb.errors import bad_csv, explain_csv_error, is_file_problem
from movielens_assets.warehouse.duckdb.sql import read_csv_sql

RATINGS = DATASETS["ratings"]
HEADER = "userId,movieId,rating,timestamp"


def duckdb_error(path: Path, text: str) -> duckdb.Error:
    """The error DuckDB raises reading ``text`` as a ratings file with the loader's options."""
    path.write_text(text)
    with duckdb.connect() as connection, pytest.raises(duckdb.Error) as raised:
        connection.execute(f"select * from {read_csv_sql(RATINGS)}", {"path": str(path)}).fetchall()
    return raised.value


def test_a_short_line_names_its_line_and_the_first_missing_column(tmp_path):
    error = duckdb_error(tmp_path / "r.csv", f"{HEADER}\n1,1,4.0,964982703\n1,2,3.5\n")
    problem = explain_csv_error(str(error), RATINGS)
    assert (problem.line, problem.column) == (3, "timestamp")
    assert problem.problem.startswith(f"the line has 3 fields where the header {HEADER!r} has 4")
    assert "the line reads: 1,2,3.5" in problem.problem


def test_a_value_of_the_wrong_type_names_the_column_the_value_and_the_type(tmp_path):
    error = duckdb_error(tmp_path / "r.csv", f"{HEADER}\n1,1,4.0,964982703\n1,3,four,964981247\n")
    problem = explain_csv_error(str(error), RATINGS)
    assert (problem.line, problem.column) == (3, "rating")
    assert problem.problem.startswith('could not convert "four" to DOUBLE (a number)')
    assert problem.hint == "rating must be a number."


def test_an_unclosed_quote_is_named_as_such(tmp_path):
    error = duckdb_error(tmp_path / "r.csv", f'{HEADER}\n1,1,4.0,964982703\n1,"2,3.5,1\n')
    problem = explain_csv_error(str(error), RATINGS)
    assert "a quoted field is never closed (unterminated quote)" in problem.problem
    assert problem.hint.startswith("Close the quote")


def test_a_file_problem_becomes_a_bad_file_error_without_the_scratch_path(tmp_path):
    local = tmp_path / "object.csv"
    error = duckdb_error(local, f"{HEADER}\n1,1,4.0,964982703\n1,3,four,964981247\n")
    assert is_file_problem(error)
    bad = bad_csv("landing/ratings/r.csv", RATINGS, error, local)
    assert isinstance(bad, BadFileError)
    assert (bad.key, bad.line, bad.column) == ("landing/ratings/r.csv", 3, "rating")
    assert str(local) not in str(bad)
    assert str(bad).endswith(
        "Nothing of this file was loaded. Fix the file and land it again (a new file, or the "
        "same key with new content)."
    )


def test_a_failure_of_the_warehouse_is_not_blamed_on_the_file(tmp_path):
    with duckdb.connect() as connection, pytest.raises(duckdb.Error) as raised:
        connection.execute("select * from raw.no_such_table")
    assert not is_file_problem(raised.value)
    error = bad_csv("landing/ratings/r.csv", RATINGS, raised.value, tmp_path / "object.csv")
    assert type(error) is LoadError
    assert "the warehouse failed while loading it" in str(error)
    assert "the file itself may be fine" in str(error)
