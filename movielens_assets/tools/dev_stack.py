"""`movielens dev`'s stack: the loopback S3 server, a warm dbt, the Dagster webserver and daemon.

The dbt server (``lib/dbt_server.py``), the webserver and the daemon run under
``lib/tether.py``: killed with SIGKILL, `movielens dev` leaves nothing behind. A part that
cannot start is named (``DevStackError``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from movielens_assets.settings import PROJECT_ROOT, Settings


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


UI_HOST = "127.0.0.1"
UI_READY_SECONDS = 300.0
"""How long the webserver may take to serve the UI (it loads the code location first)."""
STOP_GRACE_SECONDS = 20.0
"""How long the webserver and the daemon (and their code servers and runs) get to stop."""
ORPHAN_GRACE_SECONDS = 10.0
"""How long they get after SIGTERM once `movielens dev` itself has died, before SIGKILL."""


class DevStackError(RuntimeError):
    """A part of the `movielens dev` stack could not start or stopped; the message names it."""


@contextlib.contextmanager
def _starting(part: str) -> Iterator[None]:
    """Name ``part`` in the error if anything goes wrong while it starts."""
    try:
        yield
    except DevStackError:
        raise
    except Exception as error:
        raise DevStackError(f"{part} could not start: {error}") from error


def port_taken(port: int, host: str = UI_HOST) -> bool:
    """Whether something already listens on (or holds) ``host:port``."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the webserver binds
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def tethered(command: list[str]) -> list[str]:
    """``command`` run by ``lib/tether.py``: it, and every process it starts (code servers, run
    workers), ends when `movielens dev` ends, even by SIGKILL."""
    return [
        sys.executable,
        "-m",
        "movielens_assets.lib.tether",
        "--orphan-grace",
        str(ORPHAN_GRACE_SECONDS),
        "--stop-grace",
        str(STOP_GRACE_SECONDS),
        "--",
        *command,
    ]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{UI_HOST}:{port}/server_info", timeout=5):
            return True
    except OSError:
        return False


def _exited(processes: dict[str, subprocess.Popen]) -> str | None:
    """The first part that has exited, as a sentence, or None."""
    for part, process in processes.items():
        if process.poll() is not None:
            return f"the {part} exited with status {process.returncode}"
    return None


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM each part (its launcher forwards it to the part's whole process group), then
    SIGKILL a part still there after the grace (its launcher's tie kills the rest)."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS + 5
    for process in processes.values():
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_dev_stack(port: int) -> int:
    """Run the stack on ``port`` until interrupted; raises ``DevStackError`` naming a part that
    cannot start or stops."""
    from movielens_assets.lib.dbt_server import SERVER_ENV, server_command, socket_for
    from movielens_assets.lib.redact import redact
    from movielens_assets.tools.local_s3 import s3_endpoint
    from movielens_assets.tools.notifications import landing_queue_env
    from movielens_assets.tools.runner import ensure_manifest, prepare_instance
    from movielens_assets.tools.sample import sample_dir

    if port_taken(port):
        raise DevStackError(
            f"the webserver cannot listen on {UI_HOST}:{port}: port {port} is taken (another "
            "`movielens dev`?). Stop what listens there or pass --port."
        )
    settings = Settings.from_env()
    with contextlib.ExitStack() as stack:
        with _starting(f"the Dagster instance in {settings.dagster_home}"):
            prepare_instance(settings)
        with _starting(f"the sample data under {settings.home}"):
            sample_dir(settings)  # what the landing assets upload by default
        with _starting("dbt parse"):
            ensure_manifest(refresh=True)  # the dev loop: pick up edits to the dbt project
        with _starting(f"the local S3 server (state in {settings.local_s3_dir})"):
            endpoint = stack.enter_context(s3_endpoint(settings))
        dbt_socket = socket_for(settings.home)
        env = {**os.environ, "MOVIELENS_HOME": str(settings.home), SERVER_ENV: str(dbt_socket)}
        env.update(landing_queue_env(settings, endpoint, progress=_progress))
        workspace = str(PROJECT_ROOT / "workspace.yaml")
        bin_dir = Path(sys.executable).parent
        commands = {
            # the runs' dbt calls fork from it, dbt imported and parsed (lib/dbt_server.py)
            "dbt server": server_command(dbt_socket),
            "webserver": [
                str(bin_dir / "dagster-webserver"),
                *("-w", workspace, "-h", UI_HOST, "-p", str(port)),
            ],
            "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
        }
        stop = {"now": False}

        def request_stop(signum: int, frame: object) -> None:
            stop["now"] = True

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, request_stop)
        processes: dict[str, subprocess.Popen] = {}
        stack.callback(_stop, processes)
        for part, command in commands.items():
            with _starting(f"the {part}"):
                processes[part] = subprocess.Popen(
                    tethered(command), env=env, start_new_session=True
                )
        deadline = time.monotonic() + UI_READY_SECONDS
        while not _serving(port):
            if stop["now"]:
                return 0
            exited = _exited(processes)
            if exited:
                raise DevStackError(f"{exited} before the UI was served (its output is above)")
            if time.monotonic() > deadline:
                raise DevStackError(f"the webserver did not serve the UI in {UI_READY_SECONDS} s")
            time.sleep(0.5)
        _progress(
            f"movielens dev: UI on http://{UI_HOST}:{port}, "
            f"S3 at {redact(endpoint) if endpoint else 'AWS'}, "
            f"state in {settings.home}. Ctrl-C stops."
        )
        while not stop["now"]:
            exited = _exited(processes)
            if exited:
                raise DevStackError(f"{exited}; stopping the rest (its output is above)")
            time.sleep(0.5)
    return 0
