"""Killed loads, concurrent loads and a busy warehouse, on a real loopback S3 and DuckDB file.

Loads run in child processes where a test needs a second process or a SIGKILL; the children
print the loader's progress, so the test knows when a file's insert has started.
"""

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from movielens_assets.defs.raw.checks import reconciliation_sql
from movielens_assets.warehouse.base import WarehouseBusyError
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.integration.test_bad_input import (  # noqa: F401 (landing_bucket: a fixture)
    RATINGS,
    client_of,
    landing_bucket,
    load,
    put,
    rows_of,
    table,
)

log = logging.getLogger(__name__)

BIG_ROWS = 3_000_000
"""Rows of the generated ratings file: its insert takes seconds, long enough to be killed."""

CHILD = """
import json, sys
from movielens_assets.lib import s3 as s3lib
from movielens_assets.warehouse.base import WarehouseBusyError
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse

class Say:
    def say(self, message):
        print(message, flush=True)
    info = debug = warning = error = say

bucket, prefix, path, busy_timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
client = s3lib.client()
warehouse = DuckDBWarehouse(path=path, busy_timeout=busy_timeout)
try:
    warehouse.ensure_raw_tables()
    objects = s3lib.list_objects(client, bucket, prefix)
    report = warehouse.load_dataset("ratings", objects, client, bucket, "child", Say())
except WarehouseBusyError as error:
    print("BUSY " + str(error), flush=True)
    sys.exit(3)
loaded = {item.key: item.rows for item in report.loaded}
print("REPORT " + json.dumps({"loaded": loaded, "skipped": report.skipped}), flush=True)
"""
"""A child process loading the ratings of a bucket (without importing the Dagster
definitions, to start fast), printing the loader's progress and its report."""


def start_child(landing, path: Path, busy_timeout: float = 60) -> subprocess.Popen:
    """A child loading the bucket's ratings into ``path``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            landing.bucket,
            landing.dataset_prefix("ratings"),
            str(path),
            str(busy_timeout),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for(child: subprocess.Popen, text: str, timeout: float = 60) -> list[str]:
    """The child's lines up to the first one containing ``text``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines
    raise AssertionError(f"the child never printed {text!r}; it printed {lines}")


def report_of(child: subprocess.Popen) -> dict:
    out, _ = child.communicate(timeout=120)
    line = next(line for line in out.splitlines() if line.startswith("REPORT "))
    return json.loads(line.removeprefix("REPORT "))


def ledger_agrees_with_table(warehouse: DuckDBWarehouse) -> list[tuple]:
    """Per key: ledger rows and RAW rows (they must be equal)."""
    rows = table(warehouse, reconciliation_sql("ratings"))
    assert all(ledger == loaded for _, ledger, loaded in rows), rows
    return rows


@pytest.fixture(scope="module")
def big_ratings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A generated ratings file of ``BIG_ROWS`` rows and its data rows counted from its bytes."""
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with duckdb.connect() as connection:
        connection.execute(
            "copy (select i % 138493 + 1 as userId, i % 27278 + 1 as movieId, "
            "(i % 10 + 1) / 2 as rating, 789652009 + i as timestamp "
            f"from range({BIG_ROWS}) as numbers(i)) to '{path}' (header, delimiter ',')"
        )
    with path.open("rb") as handle:
        newlines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b""))
    assert newlines - 1 == BIG_ROWS
    return path, newlines - 1


def land_file(landing, path: Path, name: str) -> str:
    key = landing.dataset_prefix("ratings") + name
    client_of(landing).upload_file(str(path), landing.bucket, key)
    return key


def test_a_load_killed_mid_insert_leaves_a_consistent_file_and_resumes(
    landing, tmp_path, big_ratings
):
    big, big_rows = big_ratings
    small_rows = len(csv_rows(SAMPLE / "ratings.csv"))
    small = land_file(landing, SAMPLE / "ratings.csv", "a_small.csv")
    large = land_file(landing, big, "b_big.csv")
    path = tmp_path / "warehouse.duckdb"

    child = start_child(landing, path)
    wait_for(child, f"{large} downloaded, header checked; inserting")
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.stdout.close()

    warehouse = DuckDBWarehouse(path=str(path), busy_timeout=5)
    left_over = list(warehouse.scratch.iterdir())
    assert [folder.name.split("-")[0] for folder in left_over] == [str(child.pid)]
    assert ledger_agrees_with_table(warehouse) == [(small, small_rows, small_rows)]
    assert table(warehouse, "select s3_key, rows_loaded from raw.load_ledger") == [
        (small, small_rows)
    ]

    report = load(warehouse, landing, "ratings")
    assert [(item.key, item.rows) for item in report.loaded] == [(large, big_rows)]
    assert report.skipped == [small]
    assert report.table_rows == small_rows + big_rows
    assert list(warehouse.scratch.iterdir()) == []
    assert ledger_agrees_with_table(warehouse) == [
        (small, small_rows, small_rows),
        (large, big_rows, big_rows),
    ]


def test_a_second_process_waits_for_the_first_and_loads_nothing_twice(
    landing, tmp_path, big_ratings
):
    big, big_rows = big_ratings
    key = land_file(landing, big, "big.csv")
    path = tmp_path / "warehouse.duckdb"
    first = start_child(landing, path)
    try:
        wait_for(first, f"{key} downloaded, header checked; inserting")
        impatient = DuckDBWarehouse(path=str(path), busy_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError) as raised:
            load(impatient, landing, "ratings")
        assert 0.5 <= time.monotonic() - started < 5
        assert str(raised.value).startswith(f"The warehouse {path} is busy: another process")
        assert f"(PID {first.pid})" in str(raised.value)
        assert "did not release it within busy_timeout (0.5 s)" in str(raised.value)

        patient = DuckDBWarehouse(path=str(path), busy_timeout=60)
        report = load(patient, landing, "ratings", run_id="second")
    finally:
        if first.poll() is None:
            first.wait(timeout=120)
    assert report_of(first) == {"loaded": {key: big_rows}, "skipped": []}
    assert report.loaded == [] and report.skipped == [key]
    assert ledger_agrees_with_table(patient) == [(key, big_rows, big_rows)]


def test_two_threads_loading_the_same_files_load_each_once(landing, tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_raw_tables()
    sample = b"".join((SAMPLE / "ratings.csv").read_bytes().splitlines(keepends=True)[:20_001])
    expected = {}
    for round_number in range(3):
        landed = [put(landing, "ratings", f"{round_number}_{name}.csv", sample) for name in "abc"]
        expected |= dict.fromkeys(landed, rows_of(sample))
        start = threading.Barrier(2)
        reports = []

        def race(number: int, start: threading.Barrier = start, reports: list = reports) -> None:
            start.wait()
            reports.append(load(warehouse, landing, "ratings", run_id=f"thread-{number}"))

        threads = [threading.Thread(target=race, args=(number,)) for number in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        loaded = [item.key for report in reports for item in report.loaded]
        assert sorted(loaded) == landed
        for report in reports:
            assert sorted(report.skipped + [item.key for item in report.loaded]) == sorted(expected)
    assert dict(table(warehouse, "select s3_key, rows_loaded from raw.load_ledger")) == expected
    assert {key: loaded for key, _, loaded in ledger_agrees_with_table(warehouse)} == expected


def test_a_duplicate_ledger_key_rolls_the_file_back_and_counts_as_loaded(landing, tmp_path):
    """A concurrent load commits the same file between this load's ledger read and its insert."""
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    warehouse.ensure_raw_tables()
    body = RATINGS + b"1,1,4.0,964982703\n1,2,3.5,964982704\n"
    key = put(landing, "ratings", "race.csv", body)

    class CompetingLoad:
        """A log that, when the load announces the file, loads it first through a new connection."""

        competitor = None

        def info(self, message: str) -> None:
            if "loading file" in message and self.competitor is None:
                self.competitor = load(DuckDBWarehouse(path=warehouse.path), landing, "ratings")

        debug = warning = error = info

    hook = CompetingLoad()
    client = client_of(landing)
    objects = landing.list_dataset("ratings", client)
    report = warehouse.load_dataset("ratings", objects, client, landing.bucket, "late", hook)
    assert [item.key for item in hook.competitor.loaded] == [key]
    assert report.loaded == [] and report.skipped == [key]
    assert table(warehouse, "select s3_key, rows_loaded, run_id from raw.load_ledger") == [
        (key, 2, "test-run")
    ]
    assert ledger_agrees_with_table(warehouse) == [(key, 2, 2)]
