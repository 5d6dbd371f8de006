"""``movielens bench --dev-idle``: what a whole ``movielens dev`` stack costs while nothing lands.

``movielens dev`` is started on a fresh ``MOVIELENS_HOME`` under ``work_dir`` (its own port),
``objects`` small objects are put in its bucket outside the landing prefixes (the bucket's
history; the sensor's listing and queue see none of them), and once the stack has settled
(``settle_seconds``: code locations loaded, first sensor ticks done) the CPU seconds of its
whole process tree (``/proc/<pid>/stat`` utime + stime: the S3 server, the webserver, the
daemon, their code servers and launchers) are measured over ``idle_seconds``, per process.

Measured once, kept out of the tests; a busy machine inflates the figures a little.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from movielens_assets.tools.bench_local_s3 import (
    cpu_seconds_of,
    descendants,
    s3_client,
    status_mib,
)
from movielens_assets.tools.dev_process import running_dev

Progress = Callable[[str], None]
HISTORY_PREFIX = "history"
"""Where the bucket's history objects go: outside every dataset's landing prefix."""


def _role(pid: int) -> str:
    """A short name for a process of the stack, from its command line."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "ended"
    line = " ".join(arg.decode(errors="replace") for arg in args if arg)
    for marker, role in (
        ("lib.tether", "launcher"),  # first: its command line names what it launches
        ("resource_tracker", "multiprocessing resource tracker"),
        ("local_s3_server", "loopback S3 server"),
        ("lib.dbt_server", "dbt server"),
        ("dagster-webserver", "webserver"),
        ("dagster-daemon", "daemon"),
        ("dagster api grpc", "code server"),
        ("code-server", "code server"),
        ("movielens_assets.tools.cli dev", "movielens dev"),
    ):
        if marker in line:
            return role
    return line[:60]


def _stack_cpu(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            seconds[pid] = cpu_seconds_of(pid)
        except OSError:  # ended meanwhile
            continue
    return seconds


def measure_dev_idle(
    work_dir: Path,
    objects: int = 20_000,
    settle_seconds: float = 90,
    idle_seconds: float = 60,
    progress: Progress = lambda message: None,
) -> dict[str, Any]:
    """Start ``movielens dev``, fill its bucket's history, measure its idle CPU; stop it."""
    with running_dev(work_dir / "dev-idle-home", progress=progress) as stack:
        client = s3_client(stack.endpoint)
        progress(f"bench --dev-idle: putting {objects:,} objects under {HISTORY_PREFIX}/")
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda number: client.put_object(
                        Bucket="movielens",
                        Key=f"{HISTORY_PREFIX}/{number // 1000:03d}/object-{number:06d}.csv",
                        Body=b"userId,movieId,rating,timestamp\n",
                    ),
                    range(objects),
                )
            )
        progress(f"bench --dev-idle: letting the stack settle for {settle_seconds:.0f} s")
        time.sleep(settle_seconds)
        pids = [stack.process.pid, *descendants(stack.process.pid)]
        before = _stack_cpu(pids)
        started = time.monotonic()
        progress(f"bench --dev-idle: measuring {len(pids)} processes for {idle_seconds:.0f} s")
        time.sleep(idle_seconds)
        after = _stack_cpu(pids)
        elapsed = time.monotonic() - started
        per_process: list[dict[str, Any]] = [
            {
                "pid": pid,
                "role": _role(pid),
                "cpu_percent_of_a_core": round(100 * (after[pid] - before[pid]) / elapsed, 2),
                "rss_mib": round(status_mib(pid, "VmRSS"), 1),
            }
            for pid in pids
            if pid in before and pid in after
        ]
        total = sum(float(row["cpu_percent_of_a_core"]) for row in per_process)
        return {
            "objects": objects,
            "idle_seconds": round(elapsed, 1),
            "cpu_percent_of_a_core": round(total, 2),
            "rss_mib": round(sum(float(row["rss_mib"]) for row in per_process), 1),
            "processes": per_process,
            "load_average": os.getloadavg(),
        }


def format_dev_idle(results: dict[str, Any]) -> str:
    """The measurement as a small table, one line per process and the total."""
    lines = [
        f"movielens dev, idle, {results['objects']:,} objects in the bucket, measured over "
        f"{results['idle_seconds']} s (load average {results['load_average'][0]:.2f}):",
        f"{'process':<30}{'CPU % of a core':>16}{'RSS MiB':>10}",
    ]
    for row in results["processes"]:
        lines.append(
            f"{row['role']:<30}{row['cpu_percent_of_a_core']:>16.2f}{row['rss_mib']:>10.1f}"
        )
    lines.append(
        f"{'whole stack':<30}{results['cpu_percent_of_a_core']:>16.2f}{results['rss_mib']:>10.1f}"
        "   (target: below 5% of a core)"
    )
    return "\n".join(lines)
