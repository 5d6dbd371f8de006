"""Shared fixtures: a real S3 API on loopback, a scratch MOVIELENS_HOME, the sample files."""

import csv
import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from movielens_assets.lib import s3 as s3lib
from movielens_assets.resources import LandingBucket
from movielens_assets.tools.local_s3 import LOCAL_CREDENTIALS, LocalS3Server

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "movielens_assets" / "sample_data" / "ml-latest-small"


def csv_rows(path: Path) -> list[list[str]]:
    """Data rows of a CSV file read with Python's csv module (the independent oracle)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[1:]


@pytest.fixture(autouse=True)
def _quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the whole session; yields its endpoint URL."""
    server = LocalS3Server(tmp_path_factory.mktemp("s3-state"))
    for name, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def landing(s3_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A fresh bucket on the loopback server, as the ``s3`` resource sees it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    bucket = "test-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    resource = LandingBucket(bucket=bucket, prefix="landing")
    s3lib.ensure_bucket(resource.get_client(), bucket)
    return resource


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A writable copy of the real ml-latest-small files."""
    target = tmp_path / "sample"
    shutil.copytree(SAMPLE, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target
