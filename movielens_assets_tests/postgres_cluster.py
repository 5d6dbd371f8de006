"""A throwaway PostgreSQL cluster for tests: Debian's ``postgresql`` binaries, a temp directory,
a free loopback port, password authentication over TCP (so a wrong password is really refused).

``initdb`` refuses to run as root: as root (CI), every server command runs as ``postgres`` in a
directory owned by that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from movielens_assets.tools.dev_process import free_port


@dataclass(frozen=True)
class Cluster:
    """A running cluster and a database for the Dagster instance."""

    host: str
    port: int
    user: str
    password: str
    db: str

    def env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables that point at this cluster."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }

    def connect(self):
        """A psycopg2 connection (autocommit) to the instance's database."""
        import psycopg2

        connection = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.db
        )
        connection.autocommit = True
        return connection


def postgres_bin(name: str) -> str:
    """A server binary: on PATH, or in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise FileNotFoundError(
            f"{name} not found: install Debian's postgresql package (.ci/install-postgres)."
        )
    return candidates[-1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextlib.contextmanager
def throwaway_cluster(db: str = "dagster") -> Iterator[Cluster]:
    """Start a cluster on a free port with a random password; stop and delete it on exit."""
    root = Path(tempfile.mkdtemp(prefix="movielens-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    password = secrets.token_urlsafe(16)
    password_file = root / "password"
    password_file.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(password_file, "postgres")
    data = root / "data"
    port = free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run(
        _as_server_user(
            [
                postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={password_file}",
            ]
        ),
        **run,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = postgres_bin("pg_ctl")
    subprocess.run(
        _as_server_user(
            [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"]
        ),
        **run,
    )
    try:
        subprocess.run(
            _as_server_user(
                [
                    postgres_bin("psql"),
                    "-h",
                    str(root),
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-c",
                    f"create database {db}",
                ]
            ),
            **run,
        )
        yield Cluster("127.0.0.1", port, "postgres", password, db)
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)
