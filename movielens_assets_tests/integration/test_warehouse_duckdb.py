"""The DuckDB RAW loader against a real loopback S3 server and a real DuckDB file."""

import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.lib import s3 as s3lib
from movielens_assets.warehouse.base import BadFileError, WarehouseBusyError
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse
from movielens_assets_tests.conftest import SAMPLE, csv_rows

log = logging.getLogger(__name__)


def land(landing, dataset: str, path: Path, name: str | None = None) -> None:
    key = landing.dataset_prefix(dataset) + (name or path.name)
    s3lib.upload(landing.get_client(), path, landing.bucket, key)


def load(warehouse: DuckDBWarehouse, landing, dataset: str, run_id: str = "test-run"):
    client = landing.get_client()
    objects = landing.list_dataset(dataset, client)
    return warehouse.load_dataset(dataset, objects, client, landing.bucket, run_id, log)


def table(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"), busy_timeout=1)
    warehouse.ensure_raw_tables()
    return warehouse


def test_loading_the_sample_appends_every_csv_row_with_its_source(landing, warehouse):
    for dataset in ("movies", "ratings", "tags", "links"):
        land(landing, dataset, SAMPLE / DATASETS[dataset].grouplens_file)
        report = load(warehouse, landing, dataset)
        expected = len(csv_rows(SAMPLE / DATASETS[dataset].grouplens_file))
        assert report.rows_loaded == report.table_rows == expected
    db = Path(warehouse.path)
    assert table(db, "select count(*) from raw.raw_ratings where _source_file is null") == [(0,)]
    assert table(db, "select distinct _source_file from raw.raw_movies") == [
        ("landing/movies/movies.csv",)
    ]
    ledger = table(db, "select dataset, s3_key, rows_loaded from raw.load_ledger order by 1")
    assert [(row[0], row[2]) for row in ledger] == [
        ("links", 9742),
        ("movies", 9742),
        ("ratings", 100836),
        ("tags", 3683),
    ]


def test_titles_with_commas_and_doubled_quotes_and_leading_zero_ids_survive(landing, warehouse):
    land(landing, "movies", SAMPLE / "movies.csv")
    land(landing, "links", SAMPLE / "links.csv")
    load(warehouse, landing, "movies")
    load(warehouse, landing, "links")
    expected_titles = {int(row[0]): row[1] for row in csv_rows(SAMPLE / "movies.csv")}
    loaded_titles = dict(table(Path(warehouse.path), "select movieId, title from raw.raw_movies"))
    assert loaded_titles == expected_titles
    assert any("," in title for title in loaded_titles.values())
    assert any('"' in title for title in loaded_titles.values())
    expected_imdb = {int(row[0]): row[1] for row in csv_rows(SAMPLE / "links.csv")}
    loaded_imdb = dict(table(Path(warehouse.path), "select movieId, imdbId from raw.raw_links"))
    assert loaded_imdb == expected_imdb
    empty_tmdb = sum(1 for row in csv_rows(SAMPLE / "links.csv") if row[2] == "")
    assert table(
        Path(warehouse.path), "select count(*) from raw.raw_links where tmdbId is null"
    ) == [(empty_tmdb,)]


def test_loading_again_loads_nothing_and_duplicates_nothing(landing, warehouse):
    land(landing, "ratings", SAMPLE / "ratings.csv")
    first = load(warehouse, landing, "ratings")
    second = load(warehouse, landing, "ratings", run_id="second")
    assert second.loaded == []
    assert second.skipped == ["landing/ratings/ratings.csv"]
    assert second.table_rows == first.table_rows == len(csv_rows(SAMPLE / "ratings.csv"))


def test_an_overwritten_key_with_new_content_is_a_new_file(landing, warehouse, tmp_path):
    batch = tmp_path / "batch.csv"
    batch.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    land(landing, "ratings", batch)
    load(warehouse, landing, "ratings")
    batch.write_text("userId,movieId,rating,timestamp\n1,1,2.5,964982999\n2,1,3.0,964982999\n")
    land(landing, "ratings", batch)
    report = load(warehouse, landing, "ratings")
    assert [item.rows for item in report.loaded] == [2]
    rows = table(
        Path(warehouse.path), "select rating from raw.raw_ratings order by _loaded_at, rating"
    )
    assert rows == [(4.0,), (2.5,), (3.0,)]


def test_a_bad_row_aborts_its_file_and_keeps_earlier_loads(landing, warehouse, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    land(landing, "ratings", good)
    load(warehouse, landing, "ratings")
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n2,1,3.0,964982703\n3,1,four,964982703\n")
    land(landing, "ratings", bad)
    with pytest.raises(BadFileError, match=r"landing/ratings/bad\.csv") as raised:
        load(warehouse, landing, "ratings")
    message = str(raised.value)
    assert message.startswith("landing/ratings/bad.csv, line 3, column rating:")
    assert '"four"' in message and "land it again" in message
    db = Path(warehouse.path)
    assert table(db, "select userId from raw.raw_ratings") == [(1,)]
    assert table(db, "select s3_key from raw.load_ledger") == [("landing/ratings/good.csv",)]


def test_a_wrong_header_names_the_file_line_and_column(landing, warehouse, tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("user,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    land(landing, "ratings", wrong)
    with pytest.raises(BadFileError) as raised:
        load(warehouse, landing, "ratings")
    message = str(raised.value)
    assert message.startswith("landing/ratings/wrong.csv, line 1, column 1:")
    assert "'userId,movieId,rating,timestamp'" in message
    assert table(Path(warehouse.path), "select count(*) from raw.raw_ratings") == [(0,)]


def test_gzip_files_load_like_plain_ones(landing, warehouse, tmp_path):
    import gzip
    import shutil

    compressed = tmp_path / "tags.csv.gz"
    with (SAMPLE / "tags.csv").open("rb") as source, gzip.open(compressed, "wb") as target:
        shutil.copyfileobj(source, target)
    land(landing, "tags", compressed)
    report = load(warehouse, landing, "tags")
    assert report.rows_loaded == len(csv_rows(SAMPLE / "tags.csv"))


@contextlib.contextmanager
def held_by_another_process(path: Path) -> Iterator[subprocess.Popen]:
    """Another process with the DuckDB file open for writing (for 30 s at most), until the
    block ends or the block kills it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); "
            "print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_process_holding_the_file_makes_the_load_report_busy(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with held_by_another_process(path):
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError, match="busy"):
            with DuckDBWarehouse(path=str(path), busy_timeout=1).connect():
                pass
        assert time.monotonic() - started < 10


def another_process_can_write(path: Path) -> bool:
    """Whether another process can open the DuckDB file for writing now (not while this one
    has it open)."""
    done = subprocess.run(
        [sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r}).close()"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode == 0


def test_queries_inside_reading_share_one_connection_opened_by_the_first(landing, warehouse):
    land(landing, "movies", SAMPLE / "movies.csv")
    load(warehouse, landing, "movies")
    path = Path(warehouse.path)
    warehouse.query("select count(*) from raw.raw_movies")
    assert another_process_can_write(path), "a query outside reading() keeps the file open"
    with warehouse.reading():
        assert another_process_can_write(path), "reading() opens the file before any query"
        movies = warehouse.query("select count(*) from raw.raw_movies")[0][0]
        assert not another_process_can_write(path), "the file is not held between queries"
        with warehouse.reading():  # nested: the same connection
            columns, rows = warehouse.query_with_columns(
                "select dataset, rows_loaded from raw.load_ledger"
            )
        assert not another_process_can_write(path)
    assert another_process_can_write(path)
    assert movies == len(csv_rows(SAMPLE / "movies.csv"))
    assert columns == ["dataset", "rows_loaded"] and rows == [("movies", movies)]


def test_inside_reading_a_query_that_cannot_open_the_file_raises_and_the_next_retries(
    landing, warehouse
):
    land(landing, "links", SAMPLE / "links.csv")
    load(warehouse, landing, "links")
    with held_by_another_process(Path(warehouse.path)) as holder:
        with warehouse.reading():
            with pytest.raises(WarehouseBusyError, match="busy"):
                warehouse.query("select count(*) from raw.raw_links")
            holder.kill()
            holder.wait()
            links = warehouse.query("select count(*) from raw.raw_links")[0][0]
    assert links == len(csv_rows(SAMPLE / "links.csv"))
