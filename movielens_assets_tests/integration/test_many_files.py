"""2,000 small files landed at once: every one loaded exactly once, in a bounded number of runs.

Real components: the loopback S3 API (moto server), the real ``s3_landing_sensor`` evaluated tick
after tick with its cursor carried over, each requested run executed as Dagster would launch it
(``raw_and_downstream_job`` with the request's asset selection and tags) into a real DuckDB file.
Only the dbt models downstream of RAW are stand-ins (``test_sensors.py``), so no dbt manifest is
needed. Expectations come from the S3 listing (boto3) and the files' rows (Python's csv module).
"""

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import duckdb

from movielens_assets.lib.asset_keys import raw_key
from movielens_assets_tests.integration.test_sensors import LandingSensor, sensor  # noqa: F401 (a fixture)

FILES = 2_000
MAX_RUNS = 1
"""The sensor has no per-run cap on files: a tick that finds new files requests exactly one run
for all of them, whose RAW step loads every file the ledger does not hold. 2,000 files landed
before a tick are therefore one run (``ceil(2000 / cap)`` with an unbounded cap)."""
MAX_TICKS = 5
"""Ticks the test allows before giving up; one requests the run, the next finds nothing."""


def ratings_file(number: int) -> bytes:
    """A small, valid ratings file: 1 to 4 rows, different in every file."""
    lines = ["userId,movieId,rating,timestamp"]
    for row in range(1 + number % 4):
        rating = 0.5 + (number + row) % 10 * 0.5
        lines.append(f"{number + 1},{row + 1},{rating:.1f},{964982703 + number * 7 + row}")
    return ("\n".join(lines) + "\n").encode()


def data_rows(body: bytes) -> int:
    """Data rows of a landed file, read with Python's csv module (the independent oracle)."""
    return len(list(csv.reader(io.StringIO(body.decode(), newline="")))) - 1


def land_at_once(landing_sensor: LandingSensor, bodies: dict[str, bytes]) -> None:
    """Put every file into the ratings folder before the sensor ticks."""
    client = landing_sensor.landing.get_client()
    prefix = landing_sensor.landing.dataset_prefix("ratings")

    def put(item: tuple[str, bytes]) -> None:
        client.put_object(Bucket=landing_sensor.landing.bucket, Key=prefix + item[0], Body=item[1])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, bodies.items()))


def listed_keys(landing_sensor: LandingSensor) -> set[str]:
    """The ratings keys S3 lists, through every page, straight from boto3."""
    client = landing_sensor.landing.get_client()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=landing_sensor.landing.bucket,
        Prefix=landing_sensor.landing.dataset_prefix("ratings"),
    )
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_two_thousand_files_landed_at_once_load_exactly_once_in_one_run(sensor, tmp_path):  # noqa: F811
    bodies = {f"burst-{number:04d}.csv": ratings_file(number) for number in range(FILES)}
    landing_started = time.monotonic()
    land_at_once(sensor, bodies)
    landing_seconds = time.monotonic() - landing_started
    prefix = sensor.landing.dataset_prefix("ratings")
    expected_rows = {prefix + name: data_rows(body) for name, body in bodies.items()}
    job = sensor.defs.resolve_job_def("raw_and_downstream_job")
    instance = dg.DagsterInstance.ephemeral()

    started = time.monotonic()
    runs: list[dg.ExecuteInProcessResult] = []
    for _ in range(MAX_TICKS):
        tick = sensor.tick()
        if not tick.run_requests:
            break
        for request in tick.run_requests:
            runs.append(
                job.execute_in_process(
                    instance=instance,
                    asset_selection=request.asset_selection,
                    tags={**request.tags, "dagster/run_key": request.run_key},
                    run_config=request.run_config,
                )
            )
    after_runs = sensor.tick()
    seconds = time.monotonic() - started

    assert 1 <= len(runs) <= MAX_RUNS
    assert all(run.success for run in runs)
    assert runs[0].dagster_run.tags["movielens/new_files.ratings"] == str(FILES)
    assert after_runs.run_requests == []
    assert f"{FILES} seen before" in after_runs.skip_reason.skip_message

    listing = listed_keys(sensor)
    assert listing == set(expected_rows) and len(listing) == FILES
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        ledger = connection.execute(
            "select s3_key, rows_loaded from raw.load_ledger where dataset = 'ratings'"
        ).fetchall()
        per_file = dict(
            connection.execute(
                "select _source_file, count(*) from raw.raw_ratings group by _source_file"
            ).fetchall()
        )
        table_rows = connection.execute("select count(*) from raw.raw_ratings").fetchone()[0]
    assert len(ledger) == FILES  # no key twice
    assert {key for key, _ in ledger} == listing
    assert dict(ledger) == expected_rows
    assert per_file == expected_rows  # every file's rows once, none twice
    assert table_rows == sum(expected_rows.values())
    loads = [
        event.materialization.metadata
        for run in runs
        for event in run.get_asset_materialization_events()
        if event.asset_key == raw_key("ratings")
    ]
    assert sum(metadata["files_loaded"].value for metadata in loads) == FILES
    assert sum(metadata["rows_loaded"].value for metadata in loads) == table_rows
    print(f"{FILES} files landed in {landing_seconds:.1f} s; {len(runs)} run(s), {seconds:.1f} s")
