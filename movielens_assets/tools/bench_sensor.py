"""``movielens bench --sensor``: what one tick of the S3 landing sensor costs as the bucket grows.

For each size (1,000, 10,000 and 100,000 objects already landed by default) and each mode
(``listing``: no queue; ``queue``: S3 event notifications to SQS, ``MOVIELENS_SQS_QUEUE_URL``),
against a loopback S3 + SQS server (moto) in its own process:

1. the objects are put into ``landing/ratings/`` with a thread pool (untimed; one bucket grown
   from one size to the next, both modes measured on it, each from a fresh cursor);
2. the sensor is ticked until a tick requests nothing (the catch-up: its ticks and seconds are
   kept). The objects are older than the sensor's horizon by then (the bench sets
   ``MOVIELENS_SENSOR_HORIZON_SECONDS`` short and waits it out), as a bucket's history is;
3. ``idle``: the median of three ticks with nothing new;
4. ``new``: 10 files land (keys sorting after the existing ones, as dated names do), the next
   tick is timed, and ticks go on until all 10 are seen (``new_ticks`` says how many it took);
5. the cursor's length after each step.

The sensor is evaluated in this process like the daemon does (``build_sensor_context`` with the
cursor the previous tick returned); a run it requests is recorded on the instance (an empty run
with the request's run key, so the next tick can confirm it and delete its messages), never
executed. Timings are noisy on a shared machine; they are kept out of the test suite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import dagster as dg

from movielens_assets.tools.dev_process import free_port

SIZES = (1_000, 10_000, 100_000)
MODES = ("listing", "queue")
NEW_FILES = 10
IDLE_REPEATS = 3
BENCH_HORIZON_SECONDS = 5
"""The sensor's horizon in the bench: the landed history is older than this when measured."""
PURGE_SECONDS = 61
"""SQS (and moto) refuse a second purge of a queue within 60 s."""
MAX_CATCH_UP_TICKS = 500
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "movielens-bench",
    "AWS_SECRET_ACCESS_KEY": "movielens-bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PREFIX = "landing"


class SensorBenchError(RuntimeError):
    """The sensor benchmark could not run (the loopback server did not start, ...)."""


@dg.asset(key=["bench", "recorded_run"])
def _recorded_run() -> None:
    """Stands for the run the daemon would launch: only its record (and run key) matters."""


@contextlib.contextmanager
def loopback_server(work_dir: Path) -> Iterator[str]:
    """A moto server (S3 + SQS) in its own process; yields its endpoint URL."""
    port = free_port()
    log = (work_dir / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SensorBenchError(f"the loopback server did not answer on {url}; see {log.name}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _put_objects(client: Any, bucket: str, keys: Sequence[str]) -> None:
    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, keys))


def _key(number: int) -> str:
    return f"{PREFIX}/ratings/part-{number:07d}.csv"


class _Ticker:
    """The sensor evaluated tick after tick in this process, carrying its cursor."""

    def __init__(self, environ: dict[str, str], instance: dg.DagsterInstance) -> None:
        from movielens_assets.defs.automation.schedules import raw_and_downstream_job
        from movielens_assets.defs.automation.sensors import build_s3_landing_sensor
        from movielens_assets.defs.raw.assets import build_raw_assets
        from movielens_assets.resources import LandingBucket
        from movielens_assets.settings import Settings
        from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse

        settings = Settings.from_env(environ)
        self.landing = LandingBucket(bucket=settings.bucket, prefix=settings.prefix)
        self.sensor = build_s3_landing_sensor(settings)
        self.defs = dg.Definitions(
            assets=[build_raw_assets(settings)],
            jobs=[raw_and_downstream_job],
            sensors=[self.sensor],
            resources={"s3": self.landing, "warehouse": DuckDBWarehouse(path=":memory:")},
        )
        self.instance = instance
        self.cursor: str | None = None

    def tick(self) -> tuple[float, int]:
        """One timed evaluation; returns its seconds and the new files its run request names."""
        context = dg.build_sensor_context(
            cursor=self.cursor,
            resources={"s3": self.landing},
            definitions=self.defs,
            instance=self.instance,
        )
        started = time.perf_counter()
        result = self.sensor(context)
        seconds = time.perf_counter() - started
        if not isinstance(result, dg.SensorResult):
            raise SensorBenchError(
                f"the sensor returned {type(result).__name__}, not a SensorResult"
            )
        self.cursor = result.cursor if result.cursor is not None else self.cursor
        new_files = 0
        for request in result.run_requests or []:
            new_files += int(request.tags.get("movielens/new_files", "0"))
            dg.materialize(
                [_recorded_run],
                instance=self.instance,
                tags={
                    "dagster/run_key": str(request.run_key),
                    "dagster/sensor_name": self.sensor.name,
                },
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        return seconds, new_files


def _notify(s3: Any, bucket: str, queue_arn: str | None) -> None:
    """Point the bucket's notifications at the queue (``None``: no notifications)."""
    configuration: dict[str, Any] = {}
    if queue_arn:
        configuration["QueueConfigurations"] = [
            {
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{PREFIX}/"}]}},
            }
        ]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)


def _measure(
    s3: Any, bucket: str, mode: str, objects: int, queue_url: str | None
) -> dict[str, Any]:
    """Tick a sensor with a fresh cursor over ``objects`` landed objects; then 10 more land."""
    environ = {
        "MOVIELENS_S3_BUCKET": bucket,
        "MOVIELENS_S3_PREFIX": PREFIX,
        "MOVIELENS_SENSOR_HORIZON_SECONDS": str(BENCH_HORIZON_SECONDS),
    }
    if queue_url:
        environ["MOVIELENS_SQS_QUEUE_URL"] = queue_url
    with dg.DagsterInstance.ephemeral() as instance:
        ticker = _Ticker(environ, instance)
        catch_up_ticks, catch_up_seconds = 0, 0.0
        while True:
            seconds, new_files = ticker.tick()
            catch_up_ticks += 1
            catch_up_seconds += seconds
            if new_files == 0 or catch_up_ticks >= MAX_CATCH_UP_TICKS:
                break
        cursor_idle = len(ticker.cursor or "")
        idle = [ticker.tick()[0] for _ in range(IDLE_REPEATS)]
        _put_objects(s3, bucket, [_key(objects + number) for number in range(NEW_FILES)])
        new_seconds, seen = ticker.tick()
        first_tick_saw = seen
        new_ticks = 1
        while seen < NEW_FILES and new_ticks < MAX_CATCH_UP_TICKS:
            seen += ticker.tick()[1]
            new_ticks += 1
        cursor_new = len(ticker.cursor or "")
        after_seconds, _ = ticker.tick()
        cursor_after = len(ticker.cursor or "")
    return {
        "objects": objects,
        "catch_up_ticks": catch_up_ticks,
        "catch_up_seconds": round(catch_up_seconds, 2),
        "idle_tick_seconds": round(statistics.median(idle), 3),
        "new_tick_seconds": round(new_seconds, 3),
        "new_files_first_tick": first_tick_saw,
        "new_ticks": new_ticks,
        "next_tick_seconds": round(after_seconds, 3),
        "cursor_chars_idle": cursor_idle,
        "cursor_chars_new": cursor_new,
        "cursor_chars_after": cursor_after,
    }


def _measure_all(
    endpoint: str, sizes: Sequence[int], modes: Sequence[str], progress: Callable[[str], None]
) -> dict[str, list[dict[str, Any]]]:
    """One bucket grown to each size in turn; each mode measured on it with a fresh cursor."""
    bucket = "bench-sensor"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    queue_url = queue_arn = None
    if "queue" in modes:
        sqs = boto3.client("sqs", endpoint_url=endpoint)
        queue_url = sqs.create_queue(QueueName=bucket, Attributes={"VisibilityTimeout": "120"})[
            "QueueUrl"
        ]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    landed = 0
    last_purge: float = -PURGE_SECONDS
    for size in sorted(sizes):
        started = time.perf_counter()
        _put_objects(s3, bucket, [_key(number) for number in range(landed, size)])
        progress(f"{size:,} objects landed ({time.perf_counter() - started:.1f} s to put)")
        landed = size
        time.sleep(BENCH_HORIZON_SECONDS + 1)  # the landed history is older than the horizon
        for mode in modes:
            if mode == "queue":
                # SQS allows one purge of a queue a minute
                time.sleep(max(0.0, PURGE_SECONDS - (time.monotonic() - last_purge)))
                sqs.purge_queue(QueueUrl=queue_url)
                last_purge = time.monotonic()
                _notify(s3, bucket, queue_arn)
            row = _measure(s3, bucket, mode, landed, queue_url if mode == "queue" else None)
            _notify(s3, bucket, None)
            landed += NEW_FILES
            results[mode].append(row)
            progress(f"{mode} {size:,}: {row}")
    return results


def measure_sensor_ticks(
    work_dir: Path,
    sizes: Sequence[int] = SIZES,
    progress: Callable[[str], None] = print,
    modes: Sequence[str] = MODES,
) -> dict[str, Any]:
    """Tick costs and cursor sizes per mode and size; see the module docstring."""
    work_dir.mkdir(parents=True, exist_ok=True)
    saved = {name: os.environ.get(name) for name in (*CREDENTIALS, "AWS_ENDPOINT_URL_S3")}
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor's lines per tick
    try:
        with loopback_server(work_dir) as endpoint:
            os.environ.update(CREDENTIALS)
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
            return {"modes": _measure_all(endpoint, sizes, modes, progress)}
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def format_sensor_ticks(results: dict[str, Any]) -> str:
    """The table the README shows: per mode and size, tick seconds and cursor characters."""
    lines = [
        f"{'mode':<8} {'objects':>8} {'idle tick':>10} {'10 new':>8} {'ticks':>6} "
        f"{'cursor':>9} {'catch-up':>16}",
    ]
    for mode, rows in results["modes"].items():
        for row in rows:
            lines.append(
                f"{mode:<8} {row['objects']:>8,} {row['idle_tick_seconds']:>9.2f}s "
                f"{row['new_tick_seconds']:>7.2f}s {row['new_ticks']:>6} "
                f"{row['cursor_chars_new']:>9,} "
                f"{row['catch_up_ticks']:>4} in {row['catch_up_seconds']:>7.1f}s"
            )
    lines.append(
        "idle tick: median of 3 with nothing new; 10 new: the tick after 10 files landed; "
        "ticks: until all 10 were seen; cursor: characters stored after them; catch-up: "
        "ticks from a fresh cursor until one requests nothing."
    )
    return "\n".join(lines)
