"""A COPY's per-file results, read and matched to the S3 objects (``copy_results.py``).

No emulator here: the result rows are Snowflake's columns, written out.
"""

import pytest

from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.snowflake.copy_results import (
    CopyResult,
    copy_results,
    match_file,
    unreported,
)

pytestmark = pytest.mark.snowflake


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
