"""The `movielens` command's smaller subcommands, run as a user runs them."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from movielens_assets.tools.generate import plan


def movielens(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "movielens_assets.tools.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_generate_writes_six_grouplens_files_and_reports_their_rows(tmp_path: Path):
    process = movielens("generate", "--out", str(tmp_path), "--ratings", "5000", "--seed", "7")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    expected = plan(5000)
    with (tmp_path / "ratings.csv").open(newline="") as handle:
        ratings = sum(1 for _ in csv.reader(handle)) - 1
    assert ratings == 5000 == expected.ratings
    assert "ratings" in stdout and "5,000 rows" in stdout
    assert sorted(path.name for path in tmp_path.glob("*.csv")) == [
        "genome-scores.csv",
        "genome-tags.csv",
        "links.csv",
        "movies.csv",
        "ratings.csv",
        "tags.csv",
    ]
    assert "ratings.csv" in stderr  # per-file progress


def test_run_rejects_a_data_folder_that_does_not_exist(tmp_path: Path):
    process = movielens(
        "run", "--data", str(tmp_path / "nope"), env={"MOVIELENS_HOME": str(tmp_path)}
    )
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "is not a folder" in stderr


def test_land_rejects_an_unknown_dataset(tmp_path: Path):
    process = movielens(
        "land", "x.csv", "--dataset", "users", env={"MOVIELENS_HOME": str(tmp_path)}
    )
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "unknown dataset 'users'" in stderr and "ratings" in stderr


def test_docs_generates_and_serves_the_dbt_docs_on_loopback(tmp_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = movielens(
        "docs", "--port", str(port), env={"MOVIELENS_HOME": str(tmp_path)}, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                url = f"http://127.0.0.1:{port}/manifest.json"
                with urllib.request.urlopen(url, timeout=5) as response:
                    manifest = json.loads(response.read())
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "dbt docs did not come up"
                time.sleep(1)
        models = {node["name"] for node in manifest["nodes"].values()}
        assert {"dim_movies", "fct_ratings", "mart_movie_ratings"} <= models
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert b"dbt" in response.read()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=30)
