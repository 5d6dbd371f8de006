"""``movielens dev`` as a child process, for the bench parts and the end-to-end tests.

``running_dev`` starts it on a free port with a ``MOVIELENS_HOME`` of the caller's, none of the
caller's own ``MOVIELENS_``/``DAGSTER_``/AWS endpoint variables, and its output appended to
``<home>/dev.log``. The stack counts as ready once ``movielens dev`` has announced its UI and S3
endpoint in the part of ``dev.log`` that this start wrote (a restart on the same home appends
to it). On exit its whole process group is stopped: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_SECONDS = 600.0
ANNOUNCED = re.compile(rb"UI on \S+, S3 at (\S+),")
"""The line ``movielens dev`` writes once its webserver answers."""


class DevNotReadyError(RuntimeError):
    """``movielens dev`` exited, or did not announce its UI in time; the end of its log says why."""


def announced_endpoint(log: Path, start: int = 0) -> str | None:
    """The S3 endpoint a ``movielens dev`` announced with its UI in ``log`` after byte ``start``."""
    with log.open("rb") as handle:
        handle.seek(start)
        announced = ANNOUNCED.search(handle.read())
    return announced.group(1).decode() if announced else None


def graphql_payload(
    port: int, query: str, variables: dict[str, Any] | None = None, timeout: float = 60
) -> dict[str, Any]:
    """One GraphQL request to the webserver on 127.0.0.1:``port``: its whole answer (``data``,
    and ``errors`` if any; what an error means is the caller's)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback
        payload: dict[str, Any] = json.loads(response.read())
    return payload


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PICKED_PORT = 10_000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral
    range: a server that binds port 0 meanwhile (the loopback S3 of the stack being started)
    cannot be handed the same port. (Picked from the ephemeral range, it once was: the
    webserver then failed with "address already in use".)"""
    try:
        first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32_768
    highest = max(first_ephemeral, LOWEST_PICKED_PORT + 1)
    for _ in range(200):
        port = random.randrange(LOWEST_PICKED_PORT, highest)  # noqa: S311 - not a secret
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port between {LOWEST_PICKED_PORT} and {first_ephemeral} on 127.0.0.1")


@dataclass
class DevProcess:
    """A running ``movielens dev``: its process, home, UI port and environment."""

    process: subprocess.Popen
    home: Path
    port: int
    env: dict[str, str]
    log_start: int
    """Where this start's output begins in ``home/dev.log``."""

    @property
    def log(self) -> Path:
        """``movielens dev``'s output (every start on this home)."""
        return self.home / "dev.log"

    def announced_endpoint(self) -> str | None:
        """The S3 endpoint this start announced with its UI (None until it did)."""
        return announced_endpoint(self.log, self.log_start)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint this start announced (it is ready: ``running_dev`` waited for it)."""
        endpoint = self.announced_endpoint()
        if endpoint is None:
            raise DevNotReadyError(f"movielens dev has not announced its S3 endpoint in {self.log}")
        return endpoint


def _log_tail(log: Path, start: int, limit: int = 4000) -> str:
    with log.open("rb") as handle:
        handle.seek(start)
        return handle.read().decode(errors="replace")[-limit:]


def _wait_until_announced(dev: DevProcess, ready_seconds: float) -> None:
    deadline = time.monotonic() + ready_seconds
    while dev.announced_endpoint() is None:
        if dev.process.poll() is not None:
            raise DevNotReadyError(
                f"movielens dev exited with {dev.process.returncode} before serving its UI; "
                f"the end of {dev.log}:\n" + _log_tail(dev.log, dev.log_start)
            )
        if time.monotonic() > deadline:
            raise DevNotReadyError(
                f"movielens dev did not serve its UI in {ready_seconds:.0f} s; the end of "
                f"{dev.log}:\n" + _log_tail(dev.log, dev.log_start)
            )
        time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # a test may have killed it
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def running_dev(
    home: Path,
    settings: dict[str, str] | None = None,
    port: int | None = None,
    ready_seconds: float = READY_SECONDS,
    progress: Callable[[str], None] = lambda message: None,
) -> Iterator[DevProcess]:
    """``movielens dev`` on ``port`` (default: a free one) with ``MOVIELENS_HOME=home`` and
    ``settings``; ready once it announced its UI (``DevNotReadyError`` otherwise); stopped on
    exit."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_ENDPOINT_URL", "MOVIELENS_", "DAGSTER_"))
    }
    env.update({"MOVIELENS_HOME": str(home), **(settings or {})})
    port = port or free_port()
    with (home / "dev.log").open("ab") as output:
        log_start = output.tell()
        process = subprocess.Popen(
            [sys.executable, "-m", "movielens_assets.tools.cli", "dev", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DevProcess(process, home, port, env, log_start)
    try:
        progress(f"starting movielens dev in {home}")
        _wait_until_announced(dev, ready_seconds)
        yield dev
    finally:
        _stop(process)
