"""The Snowflake RAW loader against fakesnow, an emulator standing in for Snowflake.

fakesnow (0.12.1) runs Snowflake SQL on DuckDB in this process (patch mode); the landing files
are served by a real S3 API on loopback (moto). Everything of the loader runs as in production
(the ledger, the header check over S3, one transaction per COPY, the error mapping, the ledger
rows, the query tag) except the COPY statement itself, which ``FakesnowWarehouse`` below
replaces because fakesnow cannot run the production statement:

- an external stage on ``s3://`` cannot be read: DuckDB 2.x has no ``httpfs`` extension here;
- ``FILES = (...)`` on an internal stage fails ("invalid URL prefix found in: '/tmp/...'"):
  fakesnow builds each file's URL from the stage's location and requires a URL scheme, which
  an internal stage's local directory does not have;
- a COPY transformation ``from (select $1, $2, ... from @stage)`` fails: fakesnow's rewrite
  of ``$1`` expects a JSON path (``$1:field``) and raises ``AttributeError`` on a bare ``$1``,
  and DuckDB has no ``$n`` positional columns for ``read_csv`` anyway, so ``METADATA$FILENAME``
  cannot be loaded either.

So ``FakesnowWarehouse.run_copy`` copies each object from S3 into an internal stage with
``PUT``, runs one plain ``COPY INTO table (csv columns) from '@stage/folder/file'`` per file
(fakesnow turns it into ``insert ... select from read_csv(...)``) and sets ``_SOURCE_FILE`` and
``_LOADED_AT`` with an ``UPDATE``, all inside the loader's transaction. The production
statement is covered by ``test_snowflake_sql.py``.

``ON_ERROR = SKIP_FILE`` is emulated there too: fakesnow 0.12.1 implements only
``ABORT_STATEMENT`` (anything else raises ``NotImplementedError``), and a failed statement
inside a transaction leaves DuckDB's transaction aborted, so the loader's transaction could not
go on with the next file. Under ``skip_file`` the seam therefore first tries each file's COPY in
a second session that it rolls back; a file that fails there gets a ``LOAD_FAILED`` result row
(DuckDB's message as ``first_error``; no line or column, as fakesnow casts the columns after
reading them as text, so DuckDB's message names neither) and is not copied in the loader's
transaction, as Snowflake's ``SKIP_FILE`` would do. The loader's own handling of that result
(rejection, ``RAW.LOAD_REJECTIONS``, no ledger row) and the value-rule check and delete after
the COPY run unchanged.

Two more work-arounds, also confined to this file:

- the tests' file format leaves out the options fakesnow's COPY does not implement
  (``FAKESNOW_UNSUPPORTED_FORMAT_OPTIONS``);
- one fakesnow bug is patched (``with_quote_escape``): for ``FIELD_OPTIONALLY_ENCLOSED_BY =
  '"'`` fakesnow passes DuckDB's ``read_csv`` a ``quote`` but no ``escape``, DuckDB 2.0 then
  detects no escape, and a doubled quote inside a quoted field (``"11'09""01 - September 11
  (2002)"`` in movies.csv, valid CSV that Snowflake reads) fails with "Value with unterminated
  quote found". The patch adds ``escape`` equal to the quote.
"""

import csv
import gzip
import io
import logging
import os
import re
import tempfile
from pathlib import Path

import dagster as dg
import fakesnow
import fakesnow.transforms.stage as fakesnow_stage
import pytest
import snowflake.connector
from fakesnow.copy_into import ReadCSV
from sqlglot import exp

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.dbt.failing_rows import sample_sql
from movielens_assets.defs.raw.assets import raw_metadata
from movielens_assets.defs.raw.checks import reconciliation_sql, rejections_sql
from movielens_assets.lib import s3 as s3lib
from movielens_assets.settings import Settings
from movielens_assets.warehouse.base import BadFileError
from movielens_assets.warehouse.snowflake.copy_results import CopyResult, copy_results
from movielens_assets.warehouse.snowflake.loader import CopyJob
from movielens_assets.warehouse.snowflake.quoting import (
    quote_identifier,
    stage_location,
    string_literal,
)
from movielens_assets.warehouse.snowflake.resource import SnowflakeWarehouse
from movielens_assets.warehouse.snowflake.setup_sql import CSV_FORMAT_OPTIONS
from movielens_assets.warehouse.snowflake.sql import (
    DEFAULT_FILE_FORMAT,
    DEFAULT_STAGE,
    file_format_clause,
    on_error_clause,
    raw_table_name,
)
from movielens_assets_tests.conftest import SAMPLE, csv_rows

pytestmark = pytest.mark.snowflake
log = logging.getLogger(__name__)

FAKESNOW_UNSUPPORTED_FORMAT_OPTIONS = {
    "error_on_column_count_mismatch",
    "encoding",
    "replace_invalid_characters",
}
"""Options of the production file format that fakesnow's COPY refuses ("FILE_FORMAT option ...
not implemented"); the tests' format leaves them out."""

SNOWFLAKE_ENV = {
    "SNOWFLAKE_ACCOUNT": "fakesnow",
    "SNOWFLAKE_USER": "loader",
    "SNOWFLAKE_PASSWORD": "not-a-real-password",
    "SNOWFLAKE_DATABASE": "MOVIELENS",
    "MOVIELENS_S3_PREFIX": "landing",
}


class FakesnowWarehouse(SnowflakeWarehouse):
    """Test-only: the production loader with a COPY fakesnow can run (see the module docstring)."""

    def run_copy(self, cursor, job: CopyJob) -> list[CopyResult]:
        folder, names = self.stage_paths(job.dataset, job.objects)
        table = raw_table_name(job.dataset)
        columns = ", ".join(quote_identifier(column.name) for column in job.dataset.columns)
        results: list[CopyResult] = []
        with tempfile.TemporaryDirectory(prefix="fakesnow-put-") as scratch:
            for obj, name in zip(job.objects, names, strict=True):
                local = Path(scratch) / name
                s3lib.download(job.s3, job.bucket, obj.key, local)
                cursor.execute(
                    f"put {string_literal('file://' + str(local))} "
                    f"{stage_location(self.stage, folder)} auto_compress = false overwrite = true"
                )
                copy = (
                    f"copy into {table} ({columns}) "
                    f"from {string_literal(stage_location(self.stage, folder) + name)} "
                    f"{file_format_clause(self.file_format)} {on_error_clause('abort')}"
                )
                if job.on_error == "skip_file" and (failed := self.probe_copy(copy, obj.key)):
                    results.append(failed)
                    continue
                cursor.execute(copy)
                results.extend(copy_results(cursor))
                cursor.execute(
                    f'update {table} set "_SOURCE_FILE" = ?, "_LOADED_AT" = ? '
                    'where "_SOURCE_FILE" is null',
                    [obj.key, job.loaded_at],
                )
        return results

    def probe_copy(self, copy: str, key: str) -> CopyResult | None:
        """``SKIP_FILE``'s verdict on one file: run its COPY in a session that is rolled back."""
        with snowflake.connector.connect(database=self.database, schema="RAW") as connection:
            probe = connection.cursor()
            probe.execute("begin")
            try:
                probe.execute(copy)
            except snowflake.connector.errors.ProgrammingError as error:
                message = error.msg or str(error)
                line = re.search(r"CSV Error on Line: (\d+)", message)
                first = re.sub(r"^\d{6} \(\w+\): ", "", message.strip().splitlines()[0])
                return CopyResult(
                    key, "LOAD_FAILED", 0, 0, 1, first, int(line.group(1)) if line else None
                )
            finally:
                probe.execute("rollback")
        return None


def with_quote_escape(read_expression):
    """fakesnow's ``read_csv`` rendering with ``escape`` set to the quote (see module docstring)."""

    def patched(self: ReadCSV, url: str) -> exp.Expr:
        expression = read_expression(self, url)
        if self.quote:
            expression.append("expressions", self.make_eq("escape", self.quote))
        return expression

    return patched


@pytest.fixture
def fake_snowflake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """fakesnow patched in, with what ``snowflake/setup.sql`` would have created in RAW."""
    monkeypatch.setattr(ReadCSV, "read_expression", with_quote_escape(ReadCSV.read_expression))
    # fakesnow keeps internal stages under one /tmp folder per process and never removes it.
    monkeypatch.setattr(fakesnow_stage, "LOCAL_BUCKET_PATH", str(tmp_path / "fakesnow-stages"))
    for name, value in SNOWFLAKE_ENV.items():
        monkeypatch.setenv(name, value)
    options = " ".join(
        f"{option} = {value}"
        for option, value in CSV_FORMAT_OPTIONS
        if option not in FAKESNOW_UNSUPPORTED_FORMAT_OPTIONS
    )
    with fakesnow.patch():
        with snowflake.connector.connect(database="MOVIELENS", schema="RAW") as connection:
            connection.cursor().execute(f"create stage if not exists {DEFAULT_STAGE}")
            connection.cursor().execute(
                f"create file format if not exists {DEFAULT_FILE_FORMAT} {options}"
            )
        yield snowflake.connector.connect


@pytest.fixture
def warehouse(fake_snowflake) -> FakesnowWarehouse:
    """The loader configured from the settings, with its secrets resolved by Dagster."""
    with dg.build_resources(
        {"warehouse": FakesnowWarehouse.from_settings(Settings.from_env())}
    ) as resources:
        resources.warehouse.ensure_raw_tables()
        yield resources.warehouse


def select(sql: str, params: list | None = None) -> list[tuple]:
    connect = snowflake.connector.connect
    with connect(database="MOVIELENS", schema="RAW", paramstyle="qmark") as connection:
        return connection.cursor().execute(sql, params).fetchall()


def land(landing, dataset: str, data: Path | bytes, name: str) -> str:
    key = landing.dataset_prefix(dataset) + name
    client = landing.get_client()
    if isinstance(data, Path):
        s3lib.upload(client, data, landing.bucket, key)
    else:
        client.put_object(Bucket=landing.bucket, Key=key, Body=data)
    return key


def load(warehouse: SnowflakeWarehouse, landing, dataset: str, run_id: str = "run-1"):
    client = landing.get_client()
    objects = landing.list_dataset(dataset, client)
    return warehouse.load_dataset(dataset, objects, client, landing.bucket, run_id, log)


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def test_loading_the_sample_copies_exactly_the_csv_rows(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: every sample row lands once, with its key."""
    for dataset in ("movies", "ratings", "tags", "links"):
        path = SAMPLE / DATASETS[dataset].grouplens_file
        key = land(landing, dataset, path, path.name)
        report = load(warehouse, landing, dataset)
        expected = len(csv_rows(path))
        assert report.rows_loaded == report.table_rows == expected
        assert [(r.status, r.rows_loaded) for r in report.copy_results] == [("LOADED", expected)]
        copy_metadata = raw_metadata(report, "s3://unused/")["copy_results"].value
        assert [(r["status"], r["rows_loaded"]) for r in copy_metadata] == [("LOADED", expected)]
        table = raw_table_name(DATASETS[dataset])
        assert select(f'select distinct "_SOURCE_FILE" from {table}') == [(key,)]
        assert select(f'select count(*) from {table} where "_LOADED_AT" is null') == [(0,)]

    movies = {int(row[0]): (row[1], row[2]) for row in csv_rows(SAMPLE / "movies.csv")}
    loaded = select('select "MOVIEID", "TITLE", "GENRES" from RAW.RAW_MOVIES')
    assert {movie_id: (title, genres) for movie_id, title, genres in loaded} == movies
    ratings = csv_rows(SAMPLE / "ratings.csv")
    assert select('select sum("RATING"), sum("TIMESTAMP") from RAW.RAW_RATINGS') == [
        (
            pytest.approx(sum(float(row[2]) for row in ratings)),
            sum(int(row[3]) for row in ratings),
        )
    ]
    empty_tmdb = sum(1 for row in csv_rows(SAMPLE / "links.csv") if row[2] == "")
    assert select('select count(*) from RAW.RAW_LINKS where "TMDBID" is null') == [(empty_tmdb,)]
    ledger = select(
        'select "DATASET", "S3_KEY", "ROWS_LOADED", "RUN_ID" from RAW.LOAD_LEDGER order by 1'
    )
    assert ledger == [
        ("links", "landing/links/links.csv", 9742, "run-1"),
        ("movies", "landing/movies/movies.csv", 9742, "run-1"),
        ("ratings", "landing/ratings/ratings.csv", 100836, "run-1"),
        ("tags", "landing/tags/tags.csv", 3683, "run-1"),
    ]


def test_a_rerun_loads_nothing(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: the ledger keeps a file from loading twice."""
    land(landing, "tags", SAMPLE / "tags.csv", "tags.csv")
    first = load(warehouse, landing, "tags")
    second = load(warehouse, landing, "tags", run_id="run-2")
    assert first.rows_loaded == len(csv_rows(SAMPLE / "tags.csv"))
    assert second.loaded == [] and second.copy_results == []
    assert second.skipped == ["landing/tags/tags.csv"]
    assert second.table_rows == first.table_rows == len(csv_rows(SAMPLE / "tags.csv"))
    assert select("select count(*) from RAW.LOAD_LEDGER where \"DATASET\" = 'tags'") == [(1,)]


def test_a_file_with_a_bad_rating_aborts_loads_nothing_and_keeps_earlier_data(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: ON_ERROR = ABORT_STATEMENT is atomic."""
    land(landing, "ratings", SAMPLE / "ratings.csv", "ratings.csv")
    before = load(warehouse, landing, "ratings").table_rows
    header = list(DATASETS["ratings"].header)
    rows = [["1", "1", "4.0", "964982703"], ["1", "3", "four", "964981247"]]
    bad_key = land(landing, "ratings", csv_bytes([header, *rows]), "ratings-2024.csv")

    with pytest.raises(BadFileError) as raised:
        load(warehouse, landing, "ratings", run_id="run-2")
    assert raised.value.key == bad_key
    assert "four" in str(raised.value) and "land it again" in str(raised.value)
    assert select("select count(*) from RAW.RAW_RATINGS") == [(before,)]
    assert select('select count(*) from RAW.RAW_RATINGS where "_SOURCE_FILE" = ?', [bad_key]) == [
        (0,)
    ]
    assert select('select "S3_KEY" from RAW.LOAD_LEDGER') == [("landing/ratings/ratings.csv",)]

    rows[1][2] = "4.0"
    land(landing, "ratings", csv_bytes([header, *rows]), "ratings-2024.csv")
    fixed = load(warehouse, landing, "ratings", run_id="run-3")
    assert [item.key for item in fixed.loaded] == [bad_key]
    assert fixed.table_rows == before + 2


def test_a_wrong_header_is_refused_before_any_copy(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: SKIP_HEADER would hide a wrong header."""
    land(landing, "tags", b"userId,movieId,tag,time\n1,2,funny,3\n", "tags.csv")
    with pytest.raises(BadFileError, match=r"landing/tags/tags.csv, line 1, column 4"):
        load(warehouse, landing, "tags")
    assert select("select count(*) from RAW.RAW_TAGS") == [(0,)]


def test_a_gzip_file_loads_like_its_csv_and_a_fake_gzip_is_refused(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: COMPRESSION = AUTO reads .csv.gz."""
    land(landing, "tags", gzip.compress((SAMPLE / "tags.csv").read_bytes()), "tags.csv.gz")
    assert load(warehouse, landing, "tags").rows_loaded == len(csv_rows(SAMPLE / "tags.csv"))
    key = land(landing, "tags", (SAMPLE / "tags.csv").read_bytes(), "more-tags.csv.gz")
    with pytest.raises(BadFileError, match=f"{key}: cannot be read as gzip"):
        load(warehouse, landing, "tags")


def test_an_empty_file_is_refused_with_its_key(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: an empty object never reaches COPY."""
    key = land(landing, "movies", b"", "movies.csv")
    with pytest.raises(BadFileError, match=f"{key}: is empty"):
        load(warehouse, landing, "movies")
    assert select("select count(*) from RAW.LOAD_LEDGER") == [(0,)]


def test_keys_with_quotes_semicolons_spaces_and_unicode_load_under_their_own_name(
    landing, warehouse
):
    """Emulator (fakesnow) standing in for Snowflake: odd keys are data, not SQL."""
    header = list(DATASETS["tags"].header)
    names = ["it's; drop table x.csv", "tags 2024 – été.csv", "[1] 50% off.csv"]
    keys = [
        land(landing, "tags", csv_bytes([header, ["1", str(number), "été", "3"]]), name)
        for number, name in enumerate(names)
    ]
    report = load(warehouse, landing, "tags")
    assert sorted(item.key for item in report.loaded) == sorted(keys)
    loaded = select('select "_SOURCE_FILE", "MOVIEID", "TAG" from RAW.RAW_TAGS order by 2')
    assert loaded == [(key, number, "été") for number, key in enumerate(keys)]
    assert select("select count(*) from RAW.RAW_TAGS") == [(3,)]
    # Not covered here, fakesnow cannot stage them: a name with a backslash (its stage listing,
    # a glob, never finds the file) or a "?" (PUT parses the local path as a URL and drops
    # everything after it). test_snowflake_sql.py checks that such keys render intact in FILES.


def test_every_session_carries_a_query_tag_with_the_run_and_asset(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: the tag is a login session parameter."""
    land(landing, "links", SAMPLE / "links.csv", "links.csv")
    connect = snowflake.connector.connect
    connect.reset_mock()
    load(warehouse, landing, "links", run_id="3f1c")
    warehouse.query("select 1")
    tags = [call.kwargs["session_parameters"]["QUERY_TAG"] for call in connect.call_args_list]
    assert tags == [
        '{"app":"movielens","asset":"raw/raw_links","dagster_run_id":"3f1c","tool":"dagster"}',
        '{"app":"movielens","tool":"query"}',
    ]
    assert {call.kwargs["role"] for call in connect.call_args_list} == {"LOADER"}


def test_the_resource_built_from_settings_keeps_secrets_out_of_its_configuration(monkeypatch):
    """No emulator needed: secrets are EnvVars until Dagster resolves them in a run."""
    for name, value in SNOWFLAKE_ENV.items():
        monkeypatch.setenv(name, value)
    warehouse = SnowflakeWarehouse.from_settings(Settings.from_env())
    assert isinstance(warehouse.password, dg.EnvVar)
    assert "not-a-real-password" not in repr(warehouse)
    assert warehouse.stage_key_prefix == "landing/"
    assert warehouse.kind == "snowflake"
    assert warehouse.dbt_env() == {"DBT_QUERY_TAG": '{"app":"movielens","tool":"dbt"}'}
    assert warehouse.dbt_env("9a") == {
        "DBT_QUERY_TAG": '{"app":"movielens","dagster_run_id":"9a","tool":"dbt"}'
    }


@pytest.fixture
def skip_file_warehouse(fake_snowflake) -> FakesnowWarehouse:
    """The loader with ``MOVIELENS_ON_ERROR=skip_file``, on the same emulated account."""
    environ = {**os.environ, "MOVIELENS_ON_ERROR": "skip_file"}
    with dg.build_resources(
        {"warehouse": FakesnowWarehouse.from_settings(Settings.from_env(environ))}
    ) as resources:
        resources.warehouse.ensure_raw_tables()
        yield resources.warehouse


def data_rows(data: bytes) -> int:
    """The data rows of a CSV file, counted by Python's csv module (the header excluded)."""
    return len(list(csv.reader(io.StringIO(data.decode())))) - 1


RATINGS_HEADER = list(DATASETS["ratings"].header)


def test_on_error_is_read_per_dataset_from_the_environment(monkeypatch):
    """No emulator needed: MOVIELENS_ON_ERROR_<DATASET> overrides MOVIELENS_ON_ERROR."""
    for name, value in SNOWFLAKE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MOVIELENS_ON_ERROR", "skip_file")
    monkeypatch.setenv("MOVIELENS_ON_ERROR_MOVIES", "abort_statement")
    warehouse = SnowflakeWarehouse.from_settings(Settings.from_env())
    assert [warehouse.on_error_for(name) for name in ("ratings", "movies")] == [
        "skip_file",
        "abort",
    ]


def test_skip_file_loads_the_good_files_and_rejects_the_bad_ones(landing, skip_file_warehouse):
    """Emulator (fakesnow) standing in for Snowflake: ON_ERROR = SKIP_FILE, LOAD_REJECTIONS.

    The unparsable file is judged by the seam's SKIP_FILE emulation (see the module docstring);
    the header check and everything after the COPY are the loader's own.
    """
    good = {
        "a.csv": csv_bytes([RATINGS_HEADER, ["1", "1", "4.0", "964982703"]]),
        "c.csv": csv_bytes(
            [RATINGS_HEADER, *[["2", str(n), "3.5", "964982704"] for n in range(3)]]
        ),
    }
    bad = {
        "b.csv": csv_bytes([RATINGS_HEADER, ["1", "2", "4.0", "1"], ["1", "3", "four", "2"]]),
        "d.csv": b"userId,movieId,stars,timestamp\n1,4,4.0,3\n",
    }
    keys = {name: land(landing, "ratings", data, name) for name, data in {**good, **bad}.items()}

    report = load(skip_file_warehouse, landing, "ratings")

    assert sorted(item.key for item in report.loaded) == [keys["a.csv"], keys["c.csv"]]
    assert [(item.key, item.line, item.column) for item in report.rejected] == [
        (keys["d.csv"], 1, "3"),
        (keys["b.csv"], None, None),
    ]
    assert "four" in report.rejected[1].error and "land it again" in report.rejected[1].error
    loaded = select('select "_SOURCE_FILE", count(*) from RAW.RAW_RATINGS group by 1 order by 1')
    assert loaded == [(keys[name], data_rows(data)) for name, data in good.items()]
    ledger = select('select "S3_KEY", "ROWS_LOADED" from RAW.LOAD_LEDGER order by 1')
    assert ledger == loaded
    rejections = skip_file_warehouse.query(rejections_sql("ratings"))
    assert [(row[0], row[3], row[4], row[5], row[6]) for row in rejections] == [
        (keys["b.csv"], None, None, "skip_file", "run-1"),
        (keys["d.csv"], 1, "3", "skip_file", "run-1"),
    ]
    etags = {obj.key: obj.etag for obj in landing.list_dataset("ratings", landing.get_client())}
    assert [row[1] for row in rejections] == [etags[keys["b.csv"]], etags[keys["d.csv"]]]
    reconciliation = skip_file_warehouse.query(reconciliation_sql("ratings"))
    assert [(key, ledger_rows) for key, ledger_rows, _ in reconciliation] == loaded
    assert all(in_ledger == in_table for _, in_ledger, in_table in reconciliation)


def test_an_out_of_range_rating_aborts_or_is_skipped_and_loads_once_fixed(
    landing, warehouse, skip_file_warehouse
):
    """Emulator (fakesnow) standing in for Snowflake: VALUE_RULES inside the COPY's transaction.

    Snowflake keeps no line number with a loaded row, so the error names the column and the
    rule but no line.
    """
    good = csv_bytes([RATINGS_HEADER, ["1", "1", "4.0", "964982703"], ["1", "2", "0.5", "5"]])
    broken_rows = [["2", "1", "7.5", "1"], ["2", "2", "3.0", "2"], ["2", "3", "-1", "3"]]
    broken = csv_bytes([RATINGS_HEADER, *broken_rows])
    good_key = land(landing, "ratings", good, "a.csv")
    bad_key = land(landing, "ratings", broken, "b.csv")

    with pytest.raises(BadFileError) as raised:
        load(warehouse, landing, "ratings")
    assert (raised.value.key, raised.value.line, raised.value.column) == (bad_key, None, "rating")
    assert "must be a star rating from 0.5 to 5.0 in steps of 0.5 (2 rows break" in str(
        raised.value
    )
    assert select("select count(*) from RAW.RAW_RATINGS") == [(0,)]
    assert select("select count(*) from RAW.LOAD_LEDGER") == [(0,)]
    assert [row[:1] + row[5:6] for row in warehouse.query(rejections_sql("ratings"))] == [
        (bad_key, "abort")
    ]

    skipped = load(skip_file_warehouse, landing, "ratings", run_id="run-2")
    assert [item.key for item in skipped.loaded] == [good_key]
    assert [(item.key, item.column) for item in skipped.rejected] == [(bad_key, "rating")]
    assert select('select "_SOURCE_FILE", count(*) from RAW.RAW_RATINGS group by 1') == [
        (good_key, data_rows(good))
    ]
    assert select('select "S3_KEY", "ROWS_LOADED" from RAW.LOAD_LEDGER') == [
        (good_key, data_rows(good))
    ]
    assert [row[:1] + row[5:7] for row in warehouse.query(rejections_sql("ratings"))] == [
        (bad_key, "skip_file", "run-2")
    ]

    broken_rows[0][2], broken_rows[2][2] = "5.0", "1.5"
    fixed = csv_bytes([RATINGS_HEADER, *broken_rows])
    land(landing, "ratings", fixed, "b.csv")
    again = load(warehouse, landing, "ratings", run_id="run-3")
    assert [item.key for item in again.loaded] == [bad_key] and again.rejected == []
    assert select('select "_SOURCE_FILE", count(*) from RAW.RAW_RATINGS group by 1 order by 1') == [
        (good_key, data_rows(good)),
        (bad_key, data_rows(fixed)),
    ]
    assert warehouse.query(rejections_sql("ratings")) == []
    reconciliation = warehouse.query(reconciliation_sql("ratings"))
    assert all(in_ledger == in_table for _, in_ledger, in_table in reconciliation)


def test_a_relevance_outside_zero_to_one_is_rejected_under_skip_file(landing, skip_file_warehouse):
    """Emulator (fakesnow) standing in for Snowflake: the genome_scores rule, rows removed."""
    header = list(DATASETS["genome_scores"].header)
    good_key = land(landing, "genome_scores", csv_bytes([header, ["1", "1", "0.25"]]), "a.csv")
    bad_key = land(landing, "genome_scores", csv_bytes([header, ["1", "2", "1.5"]]), "b.csv")
    report = load(skip_file_warehouse, landing, "genome_scores")
    assert [item.key for item in report.loaded] == [good_key]
    assert [item.key for item in report.rejected] == [bad_key]
    assert "relevance is 1.5, but must be a relevance between 0 and 1" in report.rejected[0].error
    assert select('select "_SOURCE_FILE" from RAW.RAW_GENOME_SCORES') == [(good_key,)]


def test_a_failed_checks_sample_of_rows_comes_back_with_its_column_names(landing, warehouse):
    """Emulator (fakesnow) standing in for Snowflake: the query a failed dbt test's sample runs
    (``query_with_columns`` through ``sample_sql``) returns the column names and the rows, the
    same rows Python's csv module finds in the file."""
    path = SAMPLE / "ratings.csv"
    land(landing, "ratings", path, path.name)
    load(warehouse, landing, "ratings")
    per_movie: dict[str, list[tuple[int, float]]] = {}
    for user_id, movie_id, rating, _ in csv_rows(path):
        per_movie.setdefault(movie_id, []).append((int(user_id), float(rating)))
    movie_id, expected = next((m, r) for m, r in per_movie.items() if 2 <= len(r) <= 4)

    failing = f'select "USERID", "RATING" from RAW.RAW_RATINGS where "MOVIEID" = {int(movie_id)}'
    columns, rows = warehouse.query_with_columns(sample_sql(failing))
    assert [column.upper() for column in columns] == ["USERID", "RATING"]
    assert sorted((int(user), float(rating)) for user, rating in rows) == sorted(expected)
    capped = warehouse.query_with_columns(sample_sql('select "USERID" from RAW.RAW_RATINGS', 3))
    assert len(capped[1]) == 3
