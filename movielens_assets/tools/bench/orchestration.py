"""The parent side: each phase in its own process, its wall time and its tree's peak RSS.

``Runner.phase`` starts ``python -m movielens_assets.tools.bench <phase>`` (see ``phases.py``)
with an environment that points nowhere but where the benchmark says (``clean_environment``),
waits for it with ``os.wait4`` (whose peak RSS covers every child the phase waited for, e.g.
dbt) and reads its JSON result. ``phase_line`` turns a measurement into a row of the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from movielens_assets.lib.dbt_server import SERVER_ENV, serving, socket_for
from movielens_assets.tools.bench.errors import BenchError
from movielens_assets.tools.bench.paths import PROJECT_ROOT

PHASES_MODULE = "movielens_assets.tools.bench"
"""What ``python -m`` runs to run a phase (its ``__main__`` calls ``phases.main``)."""

Progress = Callable[[str], None]
"""Where progress lines go (``movielens bench`` prints them to stderr)."""


@dataclass
class Measured:
    """A finished subprocess: wall seconds, peak RSS of its tree, exit code, its result."""

    wall_s: float
    peak_rss_mib: float
    returncode: int
    result: dict[str, Any]
    log: Path


class Runner:
    """Starts phases as subprocesses with a controlled environment and measures them."""

    def __init__(self, work: Path, progress: Progress) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.base_env = clean_environment()
        self.endpoint: str | None = None
        self.dbt_socket: Path | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """The children's environment: no inherited MOVIELENS_/AWS endpoint/Dagster settings."""
        env = dict(self.base_env)
        if self.endpoint:
            env["AWS_ENDPOINT_URL_S3"] = self.endpoint
        if self.dbt_socket:
            env[SERVER_ENV] = str(self.dbt_socket)
        env.update(extra)
        return env

    def command(
        self,
        label: str,
        argv: Sequence[str],
        env: dict[str, str],
        check: bool = True,
        result_file: Path | None = None,
    ) -> Measured:
        """Run ``argv`` to completion; wall time and ``wait4``'s peak RSS of its tree.

        The disk's dirty pages are written first (untimed): a phase does not pay for writing the
        files the one before it left (gigabytes of DuckDB files and landed objects).
        """
        log = self.logs / f"{label}.log"
        os.sync()
        started = time.perf_counter()
        with log.open("wb") as handle:
            process = subprocess.Popen(
                list(argv), env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
            )
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if check and process.returncode != 0:
            raise BenchError(
                f"bench phase {label} exited with {process.returncode}; see {log}:\n" + tail(log)
            )
        result = {}
        if result_file is not None and result_file.exists():
            result = json.loads(result_file.read_text())
        return Measured(wall, usage.ru_maxrss / 1024, process.returncode, result, log)

    def phase(self, label: str, phase: str, spec: dict[str, Any], **env: str) -> Measured:
        """Run one phase (``phases.py``) in a subprocess."""
        self.progress(f"bench: {label} ...")
        out = self.work / "results" / f"{label}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            PHASES_MODULE,
            phase,
            json.dumps(spec),
            str(out),
        ]
        measured = self.command(label, argv, self.env(**env), result_file=out)
        self.progress(
            f"bench: {label}: {measured.wall_s:.1f} s, peak RSS {measured.peak_rss_mib:,.0f} MiB"
        )
        return measured

    @contextlib.contextmanager
    def s3_server(self) -> Iterator[dict[str, Any]]:
        """The loopback S3 server process for the whole benchmark; yields its record."""
        endpoint_file = self.work / "s3-endpoint.txt"
        endpoint_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            PHASES_MODULE,
            "s3-server",
            json.dumps({"endpoint_file": str(endpoint_file), "state_dir": str(self.work / "s3")}),
            str(self.work / "results" / "s3-server.json"),
        ]
        (self.work / "results").mkdir(parents=True, exist_ok=True)
        log = (self.logs / "s3-server.log").open("wb")
        process = subprocess.Popen(argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        record: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + 60
            while not endpoint_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the S3 server did not start; see {log.name}")
                time.sleep(0.1)
            self.endpoint = endpoint_file.read_text().strip()
            yield record
        finally:
            self.endpoint = None
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                record["peak_rss_mib"] = usage.ru_maxrss / 1024
            log.close()

    @contextlib.contextmanager
    def dbt_server(self) -> Iterator[dict[str, Any]]:
        """A warm dbt (``lib/dbt_server.py``) for the phases run meanwhile, as ``movielens dev``
        runs one for its runs; yields its record (its peak RSS, once stopped)."""
        record: dict[str, Any] = {}
        path = socket_for(self.work)
        with (self.logs / "dbt-server.log").open("wb") as log, serving(path, log) as process:
            self.dbt_socket = path
            try:
                yield record
            finally:
                self.dbt_socket = None
                process.send_signal(signal.SIGTERM)
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                record["peak_rss_mib"] = usage.ru_maxrss / 1024


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that would point a phase elsewhere."""
    from movielens_assets.tools.local_s3 import LOCAL_CREDENTIALS

    dropped = ("MOVIELENS_", "AWS_ENDPOINT_URL", "DAGSTER_", "DBT_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    env.update(LOCAL_CREDENTIALS)
    env["DO_NOT_TRACK"] = "1"
    env["MOVIELENS_TARGET"] = "local"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def machine_facts() -> dict[str, Any]:
    """Cores, memory, CPU model, load and versions: what the figures depend on."""
    import dagster
    import duckdb
    from dbt.version import __version__ as dbt_version

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu": cpu,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "dagster": dagster.__version__,
        "dbt": dbt_version,
        "platform": platform.platform(),
    }


def phase_line(
    measured: Measured, timed_s: float, rows: int, what: str, **extra: Any
) -> dict[str, Any]:
    """One row of the results table."""
    return {
        "what": what,
        "wall_s": round(timed_s, 2),
        "process_wall_s": round(measured.wall_s, 2),
        "peak_rss_mib": round(measured.peak_rss_mib, 1),
        "rows": rows,
        "rows_per_s": round(rows / timed_s) if timed_s > 0 else None,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        **extra,
    }
