"""The embedded default's S3: moto's API served on loopback by a process of its own.

The server (``local_s3_server``) keeps every object's bytes and ETag in ``$MOVIELENS_HOME/s3``
as each write happens (``local_s3_store``), so a restart keeps what landed and the RAW ledger
still knows it, and nothing runs while nobody writes. It runs in a child process, tied to the
one that started it (it gets SIGTERM when that one dies), so its work never holds this
process's GIL. One server serves one state folder at a time; other ``movielens`` processes
reuse it (``s3_endpoint``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from movielens_assets.settings import Settings
from movielens_assets.tools.local_s3_server import MALLOC_ENV
from movielens_assets.tools.local_s3_store import LocalS3StateError

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "movielens-local",
    "AWS_SECRET_ACCESS_KEY": "movielens-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Placeholders: the loopback server accepts any credentials, boto3 just needs some."""
STOP_TIMEOUT = 30.0
BUSY_WAIT = 60.0
"""Seconds to wait for the server another process is starting on the same folder."""

__all__ = [
    "LOCAL_CREDENTIALS",
    "LocalS3BusyError",
    "LocalS3Server",
    "LocalS3StateError",
    "s3_endpoint",
]


class LocalS3StartError(RuntimeError):
    """The loopback S3 server process did not start."""


class LocalS3BusyError(LocalS3StartError):
    """Another process's server holds the state folder."""


class LocalS3Server:
    """A loopback S3 server process whose objects survive restarts in ``state_dir``."""

    def __init__(self, state_dir: Path, port: int = 0) -> None:
        self.state_dir = state_dir
        self.port = port
        self.endpoint_url = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> str:
        """Start the server process (it restores the folder first); returns the endpoint URL.

        Raises ``LocalS3StateError`` when the folder cannot be used (the message says why and
        what to do) and ``LocalS3BusyError`` when another process's server holds it.
        """
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "movielens_assets.tools.local_s3_server",
                str(self.state_dir),
                "--port",
                str(self.port),
                "--parent",
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env={**MALLOC_ENV, **os.environ},
            start_new_session=True,  # the terminal's Ctrl-C goes to us, and we stop it
        )
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        process.stdout.close()
        word, _, rest = line.partition(" ")
        if word != "listening":
            code = process.wait()
            if word == "busy":
                raise LocalS3BusyError(
                    f"another process's loopback S3 server holds {self.state_dir}"
                )
            if word == "error":
                raise LocalS3StateError(rest)
            raise LocalS3StartError(
                f"the loopback S3 server for {self.state_dir} exited with code {code} before "
                "listening; its error is printed above"
            )
        self._process = process
        self.endpoint_url = rest
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        return self.endpoint_url

    def stop(self) -> None:
        """Stop the server process (every acknowledged write is already on disk)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def running_endpoint(settings: Settings) -> str | None:
    """The endpoint of a loopback server another ``movielens`` process runs, if any."""
    path = settings.local_s3_dir / "endpoint.json"
    try:
        url = json.loads(path.read_text())["endpoint_url"]
    except (OSError, ValueError, KeyError):
        return None
    try:
        urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - loopback URL we wrote
    except OSError:
        return None
    return url


@contextlib.contextmanager
def s3_endpoint(settings: Settings) -> Iterator[str | None]:
    """Make sure the process talks to an S3 API, and yield its endpoint (None means AWS).

    A configured ``AWS_ENDPOINT_URL_S3`` or the prod target is used as is. Otherwise a loopback
    server already run by another ``movielens`` process is reused, else one is started here and
    stopped on exit. ``AWS_ENDPOINT_URL_S3`` is exported so boto3 clients and child processes
    (dbt, Dagster runs) find it.
    """
    if settings.s3_endpoint or settings.target == "prod":
        yield settings.s3_endpoint
        return
    url = running_endpoint(settings)
    server = None
    if url is None:
        server = LocalS3Server(settings.local_s3_dir)
        try:
            url = server.start()
        except LocalS3BusyError:  # another process is starting one on the same folder: use it
            server = None
            url = _wait_for_running_endpoint(settings)
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    try:
        with _exported_endpoint(url):
            yield url
    finally:
        if server:
            server.stop()


def _wait_for_running_endpoint(settings: Settings) -> str:
    deadline = time.monotonic() + BUSY_WAIT
    while time.monotonic() < deadline:
        url = running_endpoint(settings)
        if url:
            return url
        time.sleep(0.2)
    raise LocalS3BusyError(
        f"another process holds {settings.local_s3_dir / 'lock'} but serves no endpoint after "
        f"{BUSY_WAIT:.0f} s; stop the other movielens process (or set AWS_ENDPOINT_URL_S3)"
    )


@contextlib.contextmanager
def _exported_endpoint(url: str) -> Iterator[None]:
    previous = os.environ.get("AWS_ENDPOINT_URL_S3")
    os.environ["AWS_ENDPOINT_URL_S3"] = url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        else:
            os.environ["AWS_ENDPOINT_URL_S3"] = previous
