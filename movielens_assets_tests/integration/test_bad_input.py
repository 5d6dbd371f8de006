"""Bad files against a real loopback S3 server and a real DuckDB file.

Every expectation is computed here from the bytes the test lands (line numbers, row counts
from Python's csv module), never from the loader.
"""

import csv
import functools
import gzip
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.raw.assets import build_raw_assets
from movielens_assets.defs.raw.checks import (
    NO_REJECTED_FILES,
    ROWS_MATCH_LEDGER,
    build_raw_checks,
    reconciliation_sql,
    rejections_sql,
)
from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.asset_keys import raw_key
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import ConfigurationError, Settings
from movielens_assets.warehouse.base import VALUE_RULES, BadFileError, ValueRule, on_error_from_env
from movielens_assets.warehouse.duckdb import MAX_LINE_BYTES, DuckDBWarehouse
from movielens_assets_tests.conftest import SAMPLE, csv_rows

log = logging.getLogger(__name__)

RATINGS = b"userId,movieId,rating,timestamp\n"
TAGS = b"userId,movieId,tag,timestamp\n"
SCORES = b"movieId,tagId,relevance\n"
RELOAD = "Nothing of this file was loaded. Fix the file and land it again"


@functools.cache
def client_of(landing: LandingBucket):
    """One boto3 client per test bucket (creating one costs a fifth of a second)."""
    return landing.get_client()


def key_of(landing, dataset: str, name: str) -> str:
    return landing.dataset_prefix(dataset) + name


def put(landing, dataset: str, name: str, body: bytes) -> str:
    """Land ``body`` as ``name`` in the dataset's folder; returns the S3 key."""
    key = key_of(landing, dataset, name)
    client_of(landing).put_object(Bucket=landing.bucket, Key=key, Body=body)
    return key


def load(warehouse: DuckDBWarehouse, landing, dataset: str, run_id: str = "test-run"):
    client = client_of(landing)
    objects = landing.list_dataset(dataset, client)
    return warehouse.load_dataset(dataset, objects, client, landing.bucket, run_id, log)


def table(warehouse: DuckDBWarehouse, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(warehouse.path, read_only=True) as connection:
        return connection.execute(sql, params or []).fetchall()


def rows_of(body: bytes) -> int:
    """Data rows of a CSV body, by Python's csv module."""
    limit = csv.field_size_limit(len(body) + 1)
    try:
        return len(list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))) - 1
    finally:
        csv.field_size_limit(limit)


@pytest.fixture(name="landing")
def landing_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A fresh bucket per test, parametrized ones included (their ids are not bucket names)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    digest = hashlib.sha1(request.node.nodeid.encode(), usedforsecurity=False).hexdigest()
    bucket = f"bad-input-{digest[:16]}"
    resource = LandingBucket(bucket=bucket, prefix="landing")
    s3lib.ensure_bucket(client_of(resource), bucket)
    return resource


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"), busy_timeout=1)
    warehouse.ensure_raw_tables()
    return warehouse


@dataclass(frozen=True)
class Bad:
    """A bad file: its dataset, name, bytes, and where and what the error must say."""

    dataset: str
    name: str
    body: bytes
    line: int | None
    column: str | None
    problem: str


def line_of(body: bytes, marker: bytes) -> int:
    """The 1-based line of ``body`` holding ``marker``."""
    return body[: body.index(marker)].count(b"\n") + 1


def bad(dataset: str, name: str, body: bytes, marker: bytes | int | None, column, problem) -> Bad:
    """A ``Bad`` whose line is that of ``marker`` in ``body`` (or ``marker`` itself if a number)."""
    line = line_of(body, marker) if isinstance(marker, bytes) else marker
    return Bad(dataset, name, body, line, column, problem)


GOOD_RATINGS = RATINGS + b"1,1,4.0,964982703\n1,3,4.5,964981247\n"
BIG_FIELD = b"y" * (MAX_LINE_BYTES + 10)
NOT_GZIP = b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
FULL_GZIP = gzip.compress(
    RATINGS + b"".join(b"%d,%d,4.0,964982703\n" % (user, user * 7) for user in range(50_000))
)
CUT_GZIP = FULL_GZIP[: len(FULL_GZIP) // 2]

BAD_FILES = [
    bad(
        "ratings",
        "wrong_header.csv",
        b"userId,movieId,stars,timestamp\n1,1,4.0,964982703\n",
        b"userId",
        "3",
        "header has 'stars' where 'rating' was expected",
    ),
    bad(
        "ratings",
        "short_header.csv",
        b"userId,movieId,rating\n1,1,4.0\n",
        b"userId",
        None,
        "header has 3 columns, ratings files have 4",
    ),
    bad(
        "ratings",
        "five_fields.csv",
        GOOD_RATINGS + b"1,6,3.0,964982224,extra\n1,47,5.0,964983815\n",
        b"1,6,3.0",
        "5",
        "the line has 5 fields where the header 'userId,movieId,rating,timestamp' has 4",
    ),
    bad(
        "ratings",
        "non_numeric.csv",
        GOOD_RATINGS + b"1,6,four,964982224\n",
        b"1,6,four",
        "rating",
        'could not convert "four" to DOUBLE (a number)',
    ),
    bad(
        "ratings",
        "out_of_range.csv",
        GOOD_RATINGS + b"1,6,5.5,964982224\n1,7,0.0,964982225\n",
        b"1,6,5.5",
        "rating",
        "rating is 5.5, but must be a star rating from 0.5 to 5.0 in steps of 0.5 "
        "(2 rows break this rule; this is the first); the row reads: 1,6,5.5,964982224",
    ),
    bad(
        "ratings",
        "between_steps.csv",
        GOOD_RATINGS + b"1,6,4.25,964982224\n",
        b"1,6,4.25",
        "rating",
        "rating is 4.25, but must be a star rating from 0.5 to 5.0 in steps of 0.5",
    ),
    bad(
        "ratings",
        "missing_rating.csv",
        GOOD_RATINGS + b"1,6,,964982224\n",
        b"1,6,,",
        "rating",
        "rating is empty, but must be a star rating from 0.5 to 5.0 in steps of 0.5",
    ),
    bad(
        "genome_scores",
        "relevance.csv",
        SCORES + b"1,1,0.025\n1,2,1.5\n1,3,-0.1\n",
        b"1,2,1.5",
        "relevance",
        "relevance is 1.5, but must be a relevance between 0 and 1 (2 rows break this rule",
    ),
    bad(
        "ratings",
        "timestamp.csv",
        GOOD_RATINGS + b"1,6,3.0,2015-03-01 10:00\n",
        b"1,6,3.0,2015",
        "timestamp",
        'could not convert "2015-03-01 10:00" to BIGINT (a whole number)',
    ),
    bad(
        "tags",
        "latin1.csv",
        TAGS + b"2,60756,funny,1445714994\n2,89774,caf\xe9,1445715207\n",
        b"2,89774",
        None,
        "the line is not valid UTF-8",
    ),
    bad("ratings", "empty.csv", b"", None, None, "is empty (0 bytes)"),
    bad(
        "ratings",
        "mixed_endings.csv",
        GOOD_RATINGS + b"1,6,3.0,964982224\r\n",
        None,
        None,
        "is not RFC 4180 CSV: it mixes line endings",
    ),
    bad(
        "ratings",
        "truncated.csv",
        GOOD_RATINGS + b"1,6",
        b"1,6",
        "rating",
        "the line has 2 fields where the header 'userId,movieId,rating,timestamp' has 4; "
        "the line reads: 1,6",
    ),
    bad(
        "tags",
        "unterminated.csv",
        TAGS + b'2,60756,funny,1445714994\n2,89774,"Boxing story,1445715207\n2,1,a,1\n',
        b'2,89774,"Boxing',
        None,
        "a quoted field is never closed (unterminated quote)",
    ),
    bad("ratings", "not_gzip.csv.gz", NOT_GZIP, None, None, "cannot be read as gzip"),
    bad("ratings", "cut.csv.gz", CUT_GZIP, None, None, "is not a complete gzip file"),
    bad(
        "ratings",
        "gzip_named_csv.csv",
        gzip.compress(GOOD_RATINGS),
        1,
        None,
        "is gzip-compressed but its name does not end in .gz",
    ),
    bad(
        "tags",
        "huge_line.csv",
        TAGS + b"1,1," + BIG_FIELD + b",1445714994\n",
        b"1,1,yyy",
        None,
        f"the line is {MAX_LINE_BYTES + 10 + 15:,} bytes long, over the limit of "
        f"{MAX_LINE_BYTES:,} bytes",
    ),
]


@pytest.mark.parametrize("case", BAD_FILES, ids=[case.name for case in BAD_FILES])
def test_a_bad_file_names_key_line_and_column_and_loads_nothing(landing, warehouse, case):
    good = {
        "ratings": GOOD_RATINGS,
        "tags": TAGS + b"1,1,earlier,1445714994\n",
        "genome_scores": SCORES + b"9,9,0.5\n",
    }[case.dataset]
    good_key = put(landing, case.dataset, "0_good.csv", good)
    load(warehouse, landing, case.dataset)
    key = put(landing, case.dataset, case.name, case.body)
    with pytest.raises(BadFileError) as raised:
        load(warehouse, landing, case.dataset)
    message = str(raised.value)
    where = key
    if case.line is not None:
        where += f", line {case.line}"
    if case.column is not None:
        where += f", column {case.column}"
    assert message.startswith(where + ": "), message[:300]
    assert case.problem in message, message[:600]
    assert len(message) < 1_000
    assert message.endswith(RELOAD + " (a new file, or the same key with new content).")
    assert "movielens-load-" not in message and "object.csv" not in message
    raw = f"raw.raw_{case.dataset}"
    assert table(warehouse, f"select distinct _source_file from {raw}") == [(good_key,)]
    assert table(warehouse, f"select count(*) from {raw}") == [(rows_of(good),)]
    assert table(warehouse, "select s3_key from raw.load_ledger") == [(good_key,)]
    assert table(warehouse, "select s3_key, on_error from raw.load_rejections") == [(key, "abort")]


def test_the_exact_messages_for_a_few_bad_files(landing, warehouse):
    """The messages as users read them (the report quotes these)."""
    put(landing, "ratings", "bad.csv", GOOD_RATINGS + b"1,6,7.5,964982224\n")
    with pytest.raises(BadFileError) as raised:
        load(warehouse, landing, "ratings")
    assert str(raised.value) == (
        "landing/ratings/bad.csv, line 4, column rating: rating is 7.5, but must be a star "
        "rating from 0.5 to 5.0 in steps of 0.5; the row reads: 1,6,7.5,964982224. RAW only "
        "takes valid ratings: correct or drop the rows that break the rule. Nothing of this "
        "file was loaded. Fix the file and land it again (a new file, or the same key with "
        "new content)."
    )


def test_header_only_files_load_zero_rows_and_are_recorded(landing, warehouse):
    key = put(landing, "ratings", "header_only.csv", RATINGS)
    crlf_key = put(landing, "ratings", "header_only_crlf.csv", RATINGS.replace(b"\n", b"\r\n"))
    report = load(warehouse, landing, "ratings")
    assert sorted((item.key, item.rows) for item in report.loaded) == [(key, 0), (crlf_key, 0)]
    assert table(warehouse, "select s3_key, rows_loaded from raw.load_ledger order by 1") == [
        (key, 0),
        (crlf_key, 0),
    ]
    again = load(warehouse, landing, "ratings")
    assert again.loaded == [] and sorted(again.skipped) == [key, crlf_key]


@pytest.mark.parametrize("dataset", ["movies", "tags"])
def test_crlf_and_lf_files_load_identically(landing, warehouse, dataset):
    crlf = (SAMPLE / DATASETS[dataset].grouplens_file).read_bytes()
    lf = crlf.replace(b"\r\n", b"\n")
    assert b"\r" not in lf and lf.count(b"\n") == crlf.count(b"\r\n")
    put(landing, dataset, "lf.csv", lf)
    put(landing, dataset, "crlf.csv", crlf)
    report = load(warehouse, landing, dataset)
    expected = len(csv_rows(SAMPLE / DATASETS[dataset].grouplens_file))
    assert [item.rows for item in report.loaded] == [expected, expected]
    columns = ", ".join(f'"{name}"' for name in DATASETS[dataset].header)
    by_file = {
        name: table(
            warehouse,
            f"select {columns} from raw.raw_{dataset} where _source_file = ? order by all",
            [key_of(landing, dataset, name)],
        )
        for name in ("lf.csv", "crlf.csv")
    }
    assert by_file["lf.csv"] == by_file["crlf.csv"]
    last = DATASETS[dataset].header[-1]
    assert table(
        warehouse, f"select count(*) from raw.raw_{dataset} where \"{last}\"::varchar like '%\r%'"
    ) == [(0,)]


def test_a_ten_megabyte_tag_loads_whole(landing, warehouse):
    tag = "a" * (10 * 1024 * 1024)
    body = TAGS + f'1,1,"{tag}",1445714994\n2,2,short,1445714995\n'.encode()
    put(landing, "tags", "long_tag.csv", body)
    report = load(warehouse, landing, "tags")
    assert report.rows_loaded == rows_of(body) == 2
    assert table(warehouse, "select length(tag) from raw.raw_tags order by userId") == [
        (len(tag),),
        (5,),
    ]


def test_a_fixed_file_under_the_same_key_loads(landing, warehouse):
    key = put(landing, "ratings", "batch.csv", GOOD_RATINGS + b"1,6,9.0,964982224\n")
    with pytest.raises(BadFileError):
        load(warehouse, landing, "ratings")
    fixed = GOOD_RATINGS + b"1,6,4.0,964982224\n"
    put(landing, "ratings", "batch.csv", fixed)
    report = load(warehouse, landing, "ratings")
    assert [(item.key, item.rows) for item in report.loaded] == [(key, rows_of(fixed))]
    assert report.rejected == []
    assert table(warehouse, "select count(*) from raw.load_rejections") == [(0,)]
    assert table(warehouse, "select max(rating) from raw.raw_ratings") == [(4.5,)]


def test_a_fixed_file_under_a_new_key_loads_once_the_bad_one_is_gone(landing, warehouse):
    bad_key = put(landing, "ratings", "batch.csv", GOOD_RATINGS + b"1,6,x,964982224\n")
    with pytest.raises(BadFileError):
        load(warehouse, landing, "ratings")
    client_of(landing).delete_object(Bucket=landing.bucket, Key=bad_key)
    fixed = GOOD_RATINGS + b"1,6,3.0,964982224\n"
    new_key = put(landing, "ratings", "batch_fixed.csv", fixed)
    report = load(warehouse, landing, "ratings")
    assert [(item.key, item.rows) for item in report.loaded] == [(new_key, rows_of(fixed))]
    assert table(warehouse, "select s3_key from raw.load_ledger") == [(new_key,)]


def test_abort_stops_at_the_first_bad_file_and_keeps_the_ones_before(landing, warehouse):
    first = put(landing, "ratings", "a.csv", GOOD_RATINGS)
    put(landing, "ratings", "b.csv", GOOD_RATINGS + b"1,6,six,964982224\n")
    put(landing, "ratings", "c.csv", GOOD_RATINGS)
    with pytest.raises(BadFileError, match=r"^landing/ratings/b\.csv, line 4, column rating"):
        load(warehouse, landing, "ratings")
    assert table(warehouse, "select s3_key from raw.load_ledger") == [(first,)]
    put(landing, "ratings", "b.csv", GOOD_RATINGS)
    report = load(warehouse, landing, "ratings")
    assert [item.key for item in report.loaded] == [
        "landing/ratings/b.csv",
        "landing/ratings/c.csv",
    ]
    assert table(warehouse, "select count(*) from raw.raw_ratings") == [
        (3 * rows_of(GOOD_RATINGS),)
    ]


def test_skip_file_loads_the_other_files_and_reports_the_bad_one(landing, tmp_path):
    warehouse = DuckDBWarehouse(
        path=str(tmp_path / "warehouse.duckdb"), on_error_by_dataset={"ratings": "skip_file"}
    )
    warehouse.ensure_raw_tables()
    good = [put(landing, "ratings", name, GOOD_RATINGS) for name in ("a.csv", "c.csv")]
    bad_body = GOOD_RATINGS + b"1,6,4.0,964982224\n1,7,11,964982224\n"
    bad_key = put(landing, "ratings", "b.csv", bad_body)
    etag = client_of(landing).head_object(Bucket=landing.bucket, Key=bad_key)["ETag"]
    report = load(warehouse, landing, "ratings")
    assert [item.key for item in report.loaded] == good
    assert [(item.key, item.etag, item.line, item.column) for item in report.rejected] == [
        (bad_key, etag.strip('"'), line_of(bad_body, b"1,7,11"), "rating")
    ]
    assert "rating is 11.0, but must be a star rating" in report.rejected[0].error
    assert table(warehouse, "select s3_key from raw.load_ledger order by 1") == [
        (key,) for key in good
    ]
    assert table(warehouse, "select count(*) from raw.raw_ratings") == [
        (2 * rows_of(GOOD_RATINGS),)
    ]
    rejections = table(warehouse, "select s3_key, etag, line, on_error from raw.load_rejections")
    assert rejections == [(bad_key, etag.strip('"'), 5, "skip_file")]

    again = load(warehouse, landing, "ratings")
    assert again.loaded == [] and [item.key for item in again.rejected] == [bad_key]

    fixed = GOOD_RATINGS + b"1,6,4.0,964982224\n1,7,1.0,964982224\n"
    put(landing, "ratings", "b.csv", fixed)
    third = load(warehouse, landing, "ratings")
    assert [(item.key, item.rows) for item in third.loaded] == [(bad_key, rows_of(fixed))]
    assert third.rejected == []
    assert table(warehouse, "select count(*) from raw.load_rejections") == [(0,)]


def test_on_error_is_read_from_the_environment_per_dataset():
    assert set(on_error_from_env({}).values()) == {"abort"}
    modes = on_error_from_env(
        {"MOVIELENS_ON_ERROR": "skip_file", "MOVIELENS_ON_ERROR_GENOME_SCORES": "ABORT_STATEMENT"}
    )
    assert modes == dict.fromkeys(DATASETS, "skip_file") | {"genome_scores": "abort"}
    assert on_error_from_env({"MOVIELENS_ON_ERROR_RATINGS": " Skip_File "})["ratings"] == (
        "skip_file"
    )
    with pytest.raises(ConfigurationError, match="MOVIELENS_ON_ERROR='continue' is not one of"):
        on_error_from_env({"MOVIELENS_ON_ERROR": "continue"})
    with pytest.raises(ConfigurationError, match="MOVIELENS_ON_ERROR_RATING names no dataset"):
        on_error_from_env({"MOVIELENS_ON_ERROR_RATING": "skip_file"})
    warehouse = DuckDBWarehouse.from_env("w.duckdb", {"MOVIELENS_ON_ERROR_TAGS": "skip_file"})
    assert [warehouse.on_error_for(name) for name in ("tags", "movies")] == ["skip_file", "abort"]


def test_keys_with_quotes_semicolons_spaces_and_unicode_are_data(landing, tmp_path):
    warehouse = DuckDBWarehouse(
        path=str(tmp_path / "warehouse.duckdb"), on_error_by_dataset={"ratings": "skip_file"}
    )
    warehouse.ensure_raw_tables()
    names = [
        "it's; drop table raw.load_ledger; --.csv",
        "a\"b\" ' or '1'='1.csv",
        "with space/ünïcødé 評価 🎬.csv",
        "$key $path ?.csv",
        "x'); delete from raw.raw_ratings; --.csv",
    ]
    bodies = {
        put(landing, "ratings", name, RATINGS + b"1,1,4.0,1\n" * (number + 1)): number + 1
        for number, name in enumerate(names)
    }
    bad_key = put(landing, "ratings", "bad'; drop table raw.raw_ratings; --.csv", RATINGS + b"x\n")
    report = load(warehouse, landing, "ratings")
    assert {item.key: item.rows for item in report.loaded} == bodies
    assert [item.key for item in report.rejected] == [bad_key]
    assert dict(table(warehouse, "select s3_key, rows_loaded from raw.load_ledger")) == bodies
    loaded = table(warehouse, "select _source_file, count(*) from raw.raw_ratings group by 1")
    assert dict(loaded) == bodies
    assert table(warehouse, "select s3_key from raw.load_rejections") == [(bad_key,)]
    assert load(warehouse, landing, "ratings").loaded == []


def materialize_raw(landing, warehouse: DuckDBWarehouse) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [build_raw_assets(Settings.from_env({})), *build_raw_checks()],
        resources={"s3": landing, "warehouse": warehouse},
        raise_on_error=False,
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    """The run's check evaluations by (asset name, check name)."""
    return {
        (item.asset_key.path[-1], item.check_name): item
        for item in result.get_asset_check_evaluations()
    }


def test_the_raw_checks_report_rejected_files_and_ledger_mismatches(landing, tmp_path):
    warehouse = DuckDBWarehouse(
        path=str(tmp_path / "warehouse.duckdb"), on_error_by_dataset={"ratings": "skip_file"}
    )
    good = put(landing, "ratings", "good.csv", GOOD_RATINGS)
    bad_key = put(landing, "ratings", "bad.csv", RATINGS + b"1,1,4.0,1\n1,2,4.0\n")
    put(landing, "tags", "tags.csv", TAGS + b"1,1,funny,1\n")

    first = materialize_raw(landing, warehouse)
    assert first.success
    checks = evaluations(first)
    assert len(checks) == 2 * len(DATASETS)
    rejected = checks[("raw_ratings", NO_REJECTED_FILES)]
    assert not rejected.passed
    assert rejected.metadata["rejected_keys"].value == [bad_key]
    assert rejected.metadata["rejections"].value[0]["line"] == 3
    assert all(
        item.passed
        for (asset, name), item in checks.items()
        if asset != "raw_ratings" or name != NO_REJECTED_FILES
    )
    assert checks[("raw_ratings", ROWS_MATCH_LEDGER)].metadata["files_checked"].value == 1

    with duckdb.connect(warehouse.path) as connection:
        connection.execute("delete from raw.raw_ratings where movieId = 3")
    second = materialize_raw(landing, warehouse)
    assert not second.success
    mismatch = evaluations(second)[("raw_ratings", ROWS_MATCH_LEDGER)]
    assert not mismatch.passed
    assert mismatch.metadata["mismatch_sample"].value == [
        {"key": good, "rows_in_ledger": rows_of(GOOD_RATINGS), "rows_in_table": 1}
    ]
    assert evaluations(second)[("raw_tags", ROWS_MATCH_LEDGER)].passed


def test_check_sql_takes_only_known_datasets():
    assert "where dataset = 'ratings'" in rejections_sql("ratings")
    assert "from raw.raw_genome_scores" in reconciliation_sql("genome_scores")
    with pytest.raises(ValueError, match="is not one of"):
        rejections_sql("ratings' or '1'='1")
    assert re.search(r"raw_ratings", str(raw_key("ratings")))


def test_a_rule_breaking_row_after_multiline_text_is_found_on_its_own_line(
    landing, warehouse, monkeypatch
):
    """Line numbers count the line breaks inside quoted fields (a rule on tags, for the test)."""
    rule = ValueRule("userId", "{column} > 0", "a positive user id")
    monkeypatch.setitem(VALUE_RULES, "tags", (rule,))
    body = TAGS + b'1,1,"two\nlines",1\n2,2,"three\r\nlines\nhere",2\n-3,3,fine,3\n'
    put(landing, "tags", "multiline.csv", body)
    with pytest.raises(BadFileError) as raised:
        load(warehouse, landing, "tags")
    assert str(raised.value).startswith(
        f"landing/tags/multiline.csv, line {line_of(body, b'-3,3')}, column userId: userId is -3"
    )
