"""The production topology's processes, for the tests that start it, nothing mocked.

A throwaway PostgreSQL cluster holds the instance (``deploy/dagster.yaml``, copied into a fresh
``DAGSTER_HOME``), a standalone moto server (S3, and SQS) is named by ``AWS_ENDPOINT_URL_S3``,
``dagster code-server start`` serves the code location, and ``dagster-webserver`` and
``dagster-daemon`` load it through ``deploy/workspace.yaml``. Each process runs in a session of
its own, its output in ``<root>/<name>.log``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from movielens_assets.tools.local_s3 import LOCAL_CREDENTIALS
from movielens_assets_tests.conftest import REPO
from movielens_assets_tests.e2e.deployment import graphql, wait_for
from movielens_assets_tests.postgres_cluster import Cluster, free_port, throwaway_cluster

BIN = Path(sys.executable).parent
WORKSPACE = REPO / "deploy" / "workspace.yaml"


def migrate_commands() -> list[list[str]]:
    """The compose file's ``migrate`` service (``sh -c "a && b && c"``): each command's argv, its
    program from this venv."""
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    shell, flag, script = compose["services"]["migrate"]["command"]
    assert (shell, flag) == ("sh", "-c"), "the migrate service is no longer one sh -c script"
    commands = [part.split() for part in script.split("&&")]
    return [[str(BIN / command[0]), *command[1:]] for command in commands]


def migrate(env: dict[str, str]) -> None:
    """Run what the compose file's ``migrate`` service runs, in order; fail on the first error."""
    for command in migrate_commands():
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A long-running process in its own session (stopped with its whole group)."""
    return subprocess.Popen(
        command,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def serving(port: int) -> bool:
    """Whether the webserver answers GraphQL."""
    try:
        return graphql(port, "{ version }")["version"] is not None
    except OSError:
        return False


def serving_s3(port: int) -> bool:
    """Whether the S3 server answers (an HTTP error is an answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
            return True
    except OSError as error:
        return getattr(error, "code", None) is not None


@dataclass
class Production:
    """The topology's environment, ports and processes (stopped in reverse order)."""

    root: Path
    env: dict[str, str]
    postgres: Cluster
    s3_port: int
    code_port: int
    web_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        process = start(command, self.env, self.root / f"{name}.log")
        self.processes.append(process)
        return process

    def start_servers(self) -> None:
        """The code server and the webserver (not the daemon: ``start_daemon``)."""
        self.start(
            "code-server",
            [
                str(BIN / "dagster"),
                *("code-server", "start", "-h", "127.0.0.1", "-p", str(self.code_port)),
                *("-m", "movielens_assets.definitions", "--location-name", "movielens"),
            ],
        )
        self.start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                *("-h", "127.0.0.1", "-p", str(self.web_port), "-w", str(WORKSPACE)),
            ],
        )

    def start_daemon(self, name: str = "daemon") -> subprocess.Popen:
        return self.start(name, [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)])

    def wait_for_webserver(self) -> None:
        wait_for("the webserver", lambda: serving(self.web_port), 180, every=1)


@contextlib.contextmanager
def production(root: Path, **env: str) -> Iterator[Production]:
    """PostgreSQL and the S3 server running and the instance prepared by the compose file's
    ``migrate`` commands (``migrate``); the servers and the daemon are the caller's to start.
    ``env``: more variables for every process. Everything is stopped on exit."""
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    s3_port, code_port, web_port = free_port(), free_port(), free_port()
    with throwaway_cluster() as postgres:
        shared = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AWS_ENDPOINT_URL", "MOVIELENS_", "DAGSTER_", "DBT_"))
        }
        shared.update(
            {
                **LOCAL_CREDENTIALS,  # the loopback S3 server takes any
                **postgres.env(),
                "DAGSTER_HOME": str(dagster_home),
                "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
                "DAGSTER_CODE_SERVER_PORT": str(code_port),
                "MOVIELENS_HOME": str(root / "home"),
                "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{s3_port}",
                **env,
            }
        )
        topology = Production(root, shared, postgres, s3_port, code_port, web_port)
        try:
            topology.start("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)])
            migrate(shared)
            wait_for("the S3 server", lambda: serving_s3(s3_port), 60)
            yield topology
        finally:
            stop(list(reversed(topology.processes)))
