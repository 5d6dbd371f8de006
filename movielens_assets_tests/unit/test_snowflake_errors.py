"""Snowflake's errors explained as ``BadFileError``s (``warehouse/snowflake/errors.py``).

No emulator here: the messages and result rows are Snowflake's, written out.
"""

import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import VALUE_RULES, BadFileError
from movielens_assets.warehouse.snowflake.copy_results import CopyResult
from movielens_assets.warehouse.snowflake.errors import (
    copy_error,
    failed_file_error,
    parse_copy_error,
    rule_violation,
)

pytestmark = pytest.mark.snowflake


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
