"""``movielens bench --local-s3``: what the loopback S3 costs with many files in its bucket.

The server is started as ``movielens dev`` starts it, by a host process of its own (so the
figures are that process tree's: the host and, when the server runs in a child, the child).
Measured, on a state folder of its own under ``work_dir``:

1. ``objects`` small objects put in a thread pool (``raw_files`` of them ratings files, the
   rest in a folder no asset reads), and their listing with ETags;
2. a restart: the listing again, compared with the one before (keys, ETags, sizes);
3. idle CPU of the process tree over ``idle_seconds`` (``/proc/<pid>/stat`` utime + stime) and
   its RSS, with every object in the bucket;
4. the RAW load of the ``raw_files`` ratings files (``raw_tables`` for ``raw/raw_ratings`` with
   ``dg.materialize`` into a fresh DuckDB file), as files per second;
5. a ~520 MB CSV-like file stored (multipart, as ``movielens land`` uploads), the RSS after it
   and the peak, and its ETag after one more restart.

Timings are noisy on a shared machine; they are measured once and kept out of the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

BUCKET = "movielens-bench-local-s3"
PREFIX = "landing"
BIG_FILE_BYTES = 520 * 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Progress = Callable[[str], None]


class LocalS3BenchError(RuntimeError):
    """The loopback S3 benchmark could not run (the server did not start, a check failed)."""


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            direct = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in direct:
            found += [child, *descendants(child)]
    return found


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_mib(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Host:
    """A process that runs ``LocalS3Server`` on a state folder until its stdin closes."""

    def __init__(self, state_dir: Path, log: Path) -> None:
        self.state_dir = state_dir
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "movielens_assets.tools.bench_local_s3", str(state_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        line = self.process.stdout.readline().decode().strip() if self.process.stdout else ""
        if not line.startswith("http://"):
            self.process.kill()
            raise LocalS3BenchError(f"the loopback S3 did not start; see {log}")
        self.endpoint = line

    @property
    def pids(self) -> list[int]:
        """The host and its descendants (the S3 server, where it runs in a child)."""
        return [self.process.pid, *descendants(self.process.pid)]

    @property
    def server_pid(self) -> int:
        """The process serving S3: the host's last descendant, else the host itself."""
        return self.pids[-1]

    def cpu_seconds(self) -> float:
        """CPU seconds the whole tree has used so far."""
        return sum(cpu_seconds_of(pid) for pid in self.pids)

    def stop(self) -> float:
        """Close the host's stdin, wait for it (and the server) to stop; returns seconds."""
        started = time.monotonic()
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=1800)
        self._log.close()
        return time.monotonic() - started


def _host_main(state_dir: Path) -> None:
    """The host: start the server, print its endpoint, serve until stdin closes."""
    from movielens_assets.tools.local_s3 import LOCAL_CREDENTIALS, LocalS3Server

    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    server = LocalS3Server(state_dir)
    print(server.start(), flush=True)
    sys.stdin.read()
    server.stop()


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the loopback server at ``endpoint`` (its placeholder credentials)."""
    import boto3
    from botocore.config import Config

    from movielens_assets.tools.local_s3 import LOCAL_CREDENTIALS

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        config=Config(max_pool_connections=32, retries={"mode": "standard"}),
    )


def _listing(endpoint: str) -> dict[str, tuple[str, int]]:
    """Every object of the bench bucket: key -> (ETag, size), through every page."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {
        item["Key"]: (item["ETag"], item["Size"])
        for page in pages
        for item in page.get("Contents", [])
    }


def _ratings_file(number: int) -> bytes:
    """A small valid ratings file (1 to 4 rows), different for every number."""
    lines = ["userId,movieId,rating,timestamp"]
    for row in range(1 + number % 4):
        rating = 0.5 + (number + row) % 10 * 0.5
        lines.append(f"{number + 1},{row + 1},{rating:.1f},{964982703 + number * 7 + row}")
    return ("\n".join(lines) + "\n").encode()


def _put_small_objects(endpoint: str, objects: int, raw_files: int) -> float:
    """Put the objects from a thread pool; returns seconds."""
    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)

    def put(number: int) -> None:
        folder = "ratings" if number < raw_files else "bench-background"
        key = f"{PREFIX}/{folder}/part-{number:06d}.csv"
        client.put_object(Bucket=BUCKET, Key=key, Body=_ratings_file(number))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, range(objects)))
    return time.monotonic() - started


def _write_big_file(path: Path, size: int) -> None:
    """About ``size`` bytes of ratings-like CSV lines, written in 8 MiB blocks."""
    with path.open("wb") as handle:
        handle.write(b"userId,movieId,rating,timestamp\n")
        written, block_number = 0, 0
        while written < size:
            lines = [
                f"{block_number * 1000 + row % 997},{row % 27278},{(row % 10 + 1) / 2:.1f},"
                f"{1104537600 + block_number * 131 + row}\n"
                for row in range(8 * 1024 * 1024 // 32)
            ]
            block = "".join(lines).encode()
            handle.write(block)
            written += len(block)
            block_number += 1


def _raw_load(endpoint: str, work_dir: Path) -> dict[str, Any]:
    """Materialize ``raw/raw_ratings`` from the bench bucket into a fresh DuckDB file."""
    import dagster as dg

    from movielens_assets.defs.raw.assets import build_raw_assets, raw_key
    from movielens_assets.resources import LandingBucket
    from movielens_assets.settings import Settings
    from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse

    database = work_dir / "raw-load" / "warehouse.duckdb"
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    started = time.monotonic()
    result = dg.materialize(
        [build_raw_assets(Settings.from_env({}))],
        selection=[raw_key("ratings")],
        resources={
            "s3": LandingBucket(bucket=BUCKET, prefix=PREFIX, endpoint_url=endpoint),
            "warehouse": DuckDBWarehouse(path=str(database)),
        },
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        raise_on_error=False,
    )
    seconds = time.monotonic() - started
    materializations = result.asset_materializations_for_node("raw_tables")
    loaded = sum(cast(int, item.metadata["files_loaded"].value) for item in materializations)
    return {"success": result.success, "files_loaded": loaded, "seconds": seconds}


def measure_local_s3(
    work_dir: Path,
    objects: int = 20_000,
    progress: Progress = lambda line: None,
    raw_files: int = 2_000,
    idle_seconds: float = 30.0,
    big_file_bytes: int = BIG_FILE_BYTES,
) -> dict[str, Any]:
    """Measure the loopback S3 as the module docstring says; returns every figure."""
    import boto3  # noqa: F401 - fail here, not in the host, when boto3 is missing

    from movielens_assets.lib import s3 as s3lib
    from movielens_assets.tools.local_s3 import LOCAL_CREDENTIALS

    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    work_dir.mkdir(parents=True, exist_ok=True)
    state_dir = work_dir / "s3"
    log = work_dir / "local-s3-host.log"
    results: dict[str, Any] = {
        "objects": objects,
        "raw_files": raw_files,
        "load_average_at_start": os.getloadavg()[0],
    }

    started = time.monotonic()
    host = _Host(state_dir, log)
    results["start_s"] = time.monotonic() - started
    cpu_before = host.cpu_seconds()
    put_seconds = _put_small_objects(host.endpoint, objects, raw_files)
    results["puts_per_s"] = objects / put_seconds
    results["server_cpu_ms_per_put"] = 1000 * (host.cpu_seconds() - cpu_before) / objects
    progress(f"bench local-s3: {objects:,} objects put in {put_seconds:.1f} s")
    before = _listing(host.endpoint)
    if len(before) != objects:
        raise LocalS3BenchError(f"{len(before):,} objects listed, {objects:,} put")

    results["stop_s"] = host.stop()
    started = time.monotonic()
    host = _Host(state_dir, log)
    results["restart_s"] = time.monotonic() - started
    after = _listing(host.endpoint)
    results["restart_same_listing"] = after == before
    progress(
        f"bench local-s3: stopped in {results['stop_s']:.1f} s, restarted in "
        f"{results['restart_s']:.1f} s; listing kept: {after == before}"
    )

    time.sleep(2.0)
    cpu_before = host.cpu_seconds()
    time.sleep(idle_seconds)
    results["idle_cpu_percent"] = 100 * (host.cpu_seconds() - cpu_before) / idle_seconds
    results["rss_mib_at_objects"] = status_mib(host.server_pid, "VmRSS")
    results["tree_rss_mib_at_objects"] = sum(status_mib(pid, "VmRSS") for pid in host.pids)
    progress(
        f"bench local-s3: idle {results['idle_cpu_percent']:.1f}% of a core over "
        f"{idle_seconds:.0f} s; server RSS {results['rss_mib_at_objects']:.0f} MiB"
    )

    cpu_before, loader_before = host.cpu_seconds(), time.process_time()
    load = _raw_load(host.endpoint, work_dir)
    loader_cpu = time.process_time() - loader_before
    if not load["success"] or load["files_loaded"] != raw_files:
        raise LocalS3BenchError(f"the RAW load failed or loaded {load['files_loaded']} files")
    results["raw_files_per_s"] = raw_files / load["seconds"]
    results["raw_load_s"] = load["seconds"]
    server_cpu = host.cpu_seconds() - cpu_before
    results["server_cpu_percent_during_load"] = 100 * server_cpu / load["seconds"]
    results["server_cpu_ms_per_raw_file"] = 1000 * server_cpu / raw_files
    results["loader_cpu_ms_per_raw_file"] = 1000 * loader_cpu / raw_files
    progress(
        f"bench local-s3: RAW loaded {raw_files:,} files in {load['seconds']:.1f} s "
        f"({results['raw_files_per_s']:.1f} files/s)"
    )

    big = work_dir / "big-ratings.csv"
    if not big.exists() or big.stat().st_size < big_file_bytes:
        _write_big_file(big, big_file_bytes)
    client = s3_client(host.endpoint)
    started = time.monotonic()
    s3lib.upload(client, big, BUCKET, "landing/big/ratings.csv")
    results["big_file_mib"] = big.stat().st_size / 2**20
    results["big_upload_s"] = time.monotonic() - started
    time.sleep(2.0)
    results["rss_mib_after_big_file"] = status_mib(host.server_pid, "VmRSS")
    results["peak_rss_mib"] = status_mib(host.server_pid, "VmHWM")
    big_etag = client.head_object(Bucket=BUCKET, Key="landing/big/ratings.csv")["ETag"]
    progress(
        f"bench local-s3: {results['big_file_mib']:.0f} MiB stored in "
        f"{results['big_upload_s']:.1f} s; server RSS {results['rss_mib_after_big_file']:.0f} "
        f"MiB (peak {results['peak_rss_mib']:.0f})"
    )
    host.stop()
    host = _Host(state_dir, log)
    head = s3_client(host.endpoint).head_object(Bucket=BUCKET, Key="landing/big/ratings.csv")
    results["big_etag_kept"] = head["ETag"] == big_etag
    results["rss_mib_restarted_with_big_file"] = status_mib(host.server_pid, "VmRSS")
    host.stop()
    results["load_average_at_end"] = os.getloadavg()[0]
    return results


FORMAT_ROWS = (
    ("load_average_at_start", "machine load average at start", "{:.1f}"),
    ("objects", "objects in the bucket", "{:,}"),
    ("puts_per_s", "small puts per second (16 threads)", "{:,.0f}"),
    ("server_cpu_ms_per_put", "server CPU per put, ms", "{:.2f}"),
    ("stop_s", "stop, s", "{:.1f}"),
    ("restart_s", "restart with every object, s", "{:.1f}"),
    ("restart_same_listing", "listing and ETags kept across the restart", "{}"),
    ("idle_cpu_percent", "idle CPU, % of a core", "{:.1f}"),
    ("rss_mib_at_objects", "server RSS with the objects, MiB", "{:,.0f}"),
    ("raw_files_per_s", "RAW small-file load, files/s", "{:.1f}"),
    ("server_cpu_percent_during_load", "server CPU during the load, % of a core", "{:.0f}"),
    ("server_cpu_ms_per_raw_file", "server CPU per RAW file, ms", "{:.1f}"),
    ("loader_cpu_ms_per_raw_file", "loader (Dagster + DuckDB) CPU per RAW file, ms", "{:.1f}"),
    ("big_file_mib", "big file stored, MiB", "{:,.0f}"),
    ("big_upload_s", "big file upload (multipart), s", "{:.1f}"),
    ("rss_mib_after_big_file", "server RSS after the big file, MiB", "{:,.0f}"),
    ("peak_rss_mib", "server peak RSS, MiB", "{:,.0f}"),
    ("big_etag_kept", "big file's ETag kept across a restart", "{}"),
    ("rss_mib_restarted_with_big_file", "server RSS restarted with it, MiB", "{:,.0f}"),
)


def format_local_s3(results: dict[str, Any]) -> str:
    """The loopback S3 figures as a two-column plain-text table."""
    width = max(len(label) for _, label, _ in FORMAT_ROWS)
    lines = [f"{'loopback S3':<{width}}  value", "-" * (width + 12)]
    for name, label, template in FORMAT_ROWS:
        if name in results:
            lines.append(f"{label:<{width}}  {template.format(results[name])}")
    return "\n".join(lines)


if __name__ == "__main__":
    _host_main(Path(sys.argv[1]))
