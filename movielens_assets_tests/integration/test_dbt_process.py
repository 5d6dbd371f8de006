"""dbt through ``lib/dbt_process.py``, as ``movielens-dbt`` runs it, in its own process and
handed to a warm server (``lib/dbt_server.py``, as under ``movielens dev``): the exit statuses of
the ``dbt`` script, and a run that ends as one that tore the interpreter down would (the DuckDB
file checkpointed, the log flushed), although it skips the teardown. Real dbt on a real DuckDB
file, a real server process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from movielens_assets.lib.dbt_server import SERVER_ENV, serving
from movielens_assets_tests.conftest import REPO, csv_rows

DBT_PROCESS = [sys.executable, "-m", "movielens_assets.lib.dbt_process"]
DBT_SCRIPT = [str(Path(sys.executable).parent / "dbt")]
PROJECT = [
    "--project-dir",
    str(REPO / "movielens_dbt"),
    "--profiles-dir",
    str(REPO / "movielens_dbt"),
]
SEED = REPO / "movielens_dbt" / "seeds" / "seed_movie_release_dates.csv"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Path]:
    """A dbt server for the module's calls; yields its socket."""
    path = tmp_path_factory.mktemp("server") / "dbt.sock"
    with serving(path):
        yield path


@pytest.fixture(params=["itself", "on-server"])
def via(request) -> dict[str, str]:
    """The extra environment of a ``dbt_process`` call: none (dbt runs in the process) or the
    server's socket (the call is handed to it)."""
    if request.param == "itself":
        return {}
    return {SERVER_ENV: str(request.getfixturevalue("server"))}


def dbt(
    command: list[str], args: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``command`` with ``args``; a project command's artifacts and logs go to ``tmp_path``."""
    if "--project-dir" in args:
        args = [
            *args,
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "DO_NOT_TRACK": "1",
            "MOVIELENS_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
            **(env or {}),
        },
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--no-such-option"],
        ["run", *PROJECT, "--target", "no_such_target"],
        ["run", *PROJECT, "--select", "src_ratings"],
    ],
    ids=["version", "usage-error", "bad-target", "failed-model"],
)
def test_the_exit_status_is_the_dbt_scripts(args: list[str], via: dict, tmp_path: Path):
    script = dbt(DBT_SCRIPT, args, tmp_path)
    ours = dbt(DBT_PROCESS, args, tmp_path, via)
    assert ours.returncode == script.returncode, ours.stderr + ours.stdout


def test_the_statuses_tell_success_usage_errors_and_failures_apart(via: dict, tmp_path: Path):
    """What the test above compares: success 0, an error before dbt runs 2, a node that failed 1
    (``src_ratings`` reads a RAW table this empty warehouse does not have)."""
    statuses = [
        dbt(DBT_PROCESS, args, tmp_path, via).returncode
        for args in (
            ["--version"],
            ["--no-such-option"],
            ["run", *PROJECT, "--target", "no_such_target"],
            ["run", *PROJECT, "--select", "src_ratings"],
        )
    ]
    assert statuses == [0, 2, 2, 1]


def test_a_seed_is_checkpointed_into_the_file_and_logged(via: dict, tmp_path: Path):
    """Without its exit handlers, DuckDB would leave the seed's rows in ``warehouse.duckdb.wal``
    and ``dbt.log`` could miss its last lines."""
    result = dbt(DBT_PROCESS, ["seed", *PROJECT], tmp_path, via)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "warehouse.duckdb").exists()
    assert not (tmp_path / "warehouse.duckdb.wal").exists()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as connection:
        [(rows,)] = connection.execute(
            "select count(*) from dev.seed_movie_release_dates"
        ).fetchall()
    assert rows == len(csv_rows(SEED))
    log = (tmp_path / "logs" / "dbt.log").read_text()
    assert "Completed successfully" in log
    assert "Command `dbt seed` succeeded" in log  # named as the dbt script names it
    assert (tmp_path / "target" / "run_results.json").exists()
    assert "no dbt server answers" not in result.stderr
