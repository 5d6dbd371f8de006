"""The warm dbt server (``lib/dbt_server.py``): a parse reused only while nothing it was parsed
from changed, and a call's dbt that ends with its client, with its server, and on SIGINT.

A real server process, real ``dbt_process`` clients, real dbt on real DuckDB files (on a copy of
the project with one extra model, so that editing it touches nothing else)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from movielens_assets.lib.dbt_server import SERVER_ENV, serving
from movielens_assets_tests.conftest import REPO
from movielens_assets_tests.e2e.test_run_faults import alive, processes

DBT_PROCESS = [sys.executable, "-m", "movielens_assets.lib.dbt_process"]
SLOW_QUERY = "select sum(i) from range(200000000000) t(i)"
"""Minutes of DuckDB work: a call still running when the test acts on it."""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the dbt project with a model ``probe`` (``select 1 as answer``)."""
    copy = tmp_path / "movielens_dbt"
    shutil.copytree(
        REPO / "movielens_dbt", copy, ignore=shutil.ignore_patterns("target", "logs", ".*")
    )
    (copy / "models" / "probe.sql").write_text("select 1 as answer\n")
    return copy


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen, Path]]:
    """A server of its own (socket, process, log)."""
    path, log_path = tmp_path / "dbt.sock", tmp_path / "server.log"
    with log_path.open("wb") as log, serving(path, log) as process:
        yield path, process, log_path


def env_for(socket: Path, database: Path, home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "DO_NOT_TRACK": "1",
        "MOVIELENS_DUCKDB_PATH": str(database),
        SERVER_ENV: str(socket),
    }


def call(project: Path, args: list[str], env: dict[str, str], **popen) -> subprocess.Popen:
    """``dbt_process <args>`` on ``project``, artifacts beside it, with umask 022."""
    folder = project.parent
    argv = [
        *DBT_PROCESS,
        *args,
        *("--project-dir", str(project), "--profiles-dir", str(project)),
        *("--target-path", str(folder / "target"), "--log-path", str(folder / "logs")),
    ]
    return subprocess.Popen(argv, env=env, cwd=folder, text=True, umask=0o022, **popen)


def finished(project: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    process = call(project, args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def answer(database: Path) -> int:
    with duckdb.connect(str(database), read_only=True) as connection:
        [(value,)] = connection.execute("select answer from dev.probe").fetchall()
    return value


def parses(log: Path) -> int:
    return log.read_text().count("parsed the project")


def forks(pid: int) -> list[int]:
    """The server's forks: its children with its command line (not, say, the resource tracker
    of ``multiprocessing`` that dbt may start)."""
    table = processes()
    return [p.pid for p in table.values() if p.ppid == pid and p.cmdline == table[pid].cmdline]


def wait_until(what: str, probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_a_parse_is_reused_until_a_file_or_the_warehouse_changes(
    project: Path, server, tmp_path: Path
):
    """Calls 1 and 2 share a parse; an edited model (call 3) and another DuckDB file, which the
    profile takes from the environment (call 4), each get a new one that builds what they say."""
    socket, _, log = server
    first, second = tmp_path / "one" / "warehouse.duckdb", tmp_path / "two" / "warehouse.duckdb"
    first.parent.mkdir()
    second.parent.mkdir()
    run_probe = ["run", "--select", "probe"]

    done = finished(project, run_probe, env_for(socket, first, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (answer(first), parses(log)) == (1, 1)

    done = finished(project, run_probe, env_for(socket, first, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert parses(log) == 1, "the second call parsed again"
    assert "`run` on the project parsed before" in log.read_text()

    (project / "models" / "probe.sql").write_text("select 2 as answer\n")
    done = finished(project, run_probe, env_for(socket, first, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (answer(first), parses(log)) == (2, 2), "the edited model was not parsed again"

    done = finished(project, run_probe, env_for(socket, second, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (answer(second), parses(log)) == (2, 3)
    assert "no dbt server answers" not in done.stderr
    # the files dbt made have the modes the caller's umask (022 here) gives, not the socket's
    assert (second.stat().st_mode & 0o777, socket.stat().st_mode & 0o077) == (0o644, 0)


def test_a_call_that_parses_in_its_fork_after_the_server_parsed_finishes(
    project: Path, server, tmp_path: Path
):
    """``dbt parse`` (and any call with ``--no-partial-parse``) parses in the fork. dbt's static
    parser runs on a thread pool (Rust's rayon) that a fork does not inherit: had the server's
    own parse started that pool, the fork's parse would wait on it for ever."""
    socket, _, log = server
    database = tmp_path / "warehouse.duckdb"
    done = finished(project, ["run", "--select", "probe"], env_for(socket, database, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert parses(log) == 1
    for args in (["parse"], ["parse", "--no-partial-parse"]):
        shutil.rmtree(project.parent / "target")
        env = env_for(socket, database, tmp_path)
        process = call(project, args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, err = process.communicate(timeout=90)
        finally:
            process.kill()
        assert process.returncode == 0, args
        manifest = json.loads((project.parent / "target" / "manifest.json").read_text())
        assert "model.movielens_dbt.probe" in manifest["nodes"]
        assert "no dbt server answers" not in err  # declined, not unanswered
    assert log.read_text().count("`parse` declined") == 2


def test_a_killed_client_ends_its_dbt_and_the_server_serves_on(
    project: Path, server, tmp_path: Path
):
    """SIGKILL of the client (the tether's SIGKILL when a run worker dies) ends the fork
    running its dbt; the server answers the next call."""
    socket, process, _ = server
    env = env_for(socket, tmp_path / "warehouse.duckdb", tmp_path)
    client = call(project, ["show", "--inline", SLOW_QUERY], env, stdout=subprocess.DEVNULL)
    [fork] = wait_until("the call's fork", lambda: forks(process.pid))
    time.sleep(3)  # dbt is in the query by now
    assert alive(fork), "the fork ended on its own"
    os.kill(client.pid, signal.SIGKILL)
    client.wait()
    wait_until("the fork to end with its client", lambda: not alive(fork), timeout=5)
    done = finished(project, ["run", "--select", "probe"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert answer(tmp_path / "warehouse.duckdb") == 1


def test_sigint_to_the_client_stops_its_dbt(project: Path, server, tmp_path: Path):
    """dagster-dbt interrupts dbt with SIGINT when a run is terminated: the client forwards it,
    dbt stops its query and the client exits with dbt's failure status."""
    socket, process, _ = server
    env = env_for(socket, tmp_path / "warehouse.duckdb", tmp_path)
    client = call(project, ["show", "--inline", SLOW_QUERY], env, stdout=subprocess.DEVNULL)
    [fork] = wait_until("the call's fork", lambda: forks(process.pid))
    time.sleep(3)
    os.kill(client.pid, signal.SIGINT)
    assert client.wait(timeout=20) != 0
    wait_until("the fork to end", lambda: not alive(fork), timeout=5)


def test_a_killed_server_ends_its_dbt_and_the_call_fails(project: Path, server, tmp_path: Path):
    socket, process, _ = server
    env = env_for(socket, tmp_path / "warehouse.duckdb", tmp_path)
    client = call(
        project,
        ["show", "--inline", SLOW_QUERY],
        env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    [fork] = wait_until("the call's fork", lambda: forks(process.pid))
    time.sleep(3)
    process.kill()
    _, err = client.communicate(timeout=20)
    assert client.returncode == 1
    assert "ended before dbt did" in err
    wait_until("the fork to end with its server", lambda: not alive(fork), timeout=5)


def test_with_no_server_answering_dbt_runs_in_the_process(project: Path, tmp_path: Path):
    env = env_for(tmp_path / "nobody.sock", tmp_path / "warehouse.duckdb", tmp_path)
    done = finished(project, ["run", "--select", "probe"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no dbt server answers" in done.stderr
    assert answer(tmp_path / "warehouse.duckdb") == 1
