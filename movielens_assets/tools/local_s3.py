"""The embedded default's S3: moto's S3 API served on loopback, with objects kept on disk.

moto keeps state in memory only. So that ``MOVIELENS_HOME`` really holds "local S3 data"
(a restart keeps what landed), the server mirrors every object into ``$MOVIELENS_HOME/s3``
through the S3 API itself, and uploads the mirror again when it starts. Uploads use fixed
multipart settings, so a restored object keeps its ETag and the RAW ledger still knows it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from moto.server import ThreadedMotoServer

from movielens_assets.lib import s3 as s3lib
from movielens_assets.settings import Settings

log = logging.getLogger(__name__)
logging.getLogger("werkzeug").setLevel(logging.WARNING)

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "movielens-local",
    "AWS_SECRET_ACCESS_KEY": "movielens-local",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Placeholders: the loopback server accepts any credentials, boto3 just needs some."""


class LocalS3Server:
    """A moto S3 server on 127.0.0.1 whose objects survive restarts in ``state_dir``."""

    def __init__(self, state_dir: Path, port: int = 0) -> None:
        self.state_dir = state_dir
        self._objects_dir = state_dir / "objects"
        self._index_path = state_dir / "index.json"
        self._endpoint_path = state_dir / "endpoint.json"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._sync_lock = threading.Lock()
        self._stop_syncing = threading.Event()
        self._syncer: threading.Thread | None = None
        self.endpoint_url = ""

    def start(self, sync_every: float | None = None) -> str:
        """Start serving, restore the mirror, and return the endpoint URL.

        With ``sync_every`` (seconds), objects landed by other processes are mirrored to disk
        while the server runs, not only when it stops.
        """
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        self._restore()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._endpoint_path.write_text(
            json.dumps({"endpoint_url": self.endpoint_url, "pid": os.getpid()})
        )
        if sync_every:
            self._syncer = threading.Thread(target=self._sync_loop, args=(sync_every,), daemon=True)
            self._syncer.start()
        return self.endpoint_url

    def stop(self) -> None:
        """Mirror the objects to disk and stop serving."""
        self._stop_syncing.set()
        if self._syncer:
            self._syncer.join()
        self.sync()
        self._endpoint_path.unlink(missing_ok=True)
        self._server.stop()

    def _client(self):  # a boto3 client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def _load_index(self) -> dict[str, dict[str, str]]:
        if self._index_path.exists():
            return json.loads(self._index_path.read_text())
        return {}

    def _restore(self) -> None:
        index = self._load_index()
        if not index:
            return
        s3 = self._client()
        for bucket in sorted({entry["bucket"] for entry in index.values()}):
            s3lib.ensure_bucket(s3, bucket)
        for entry in index.values():
            path = self._objects_dir / entry["file"]
            if path.exists():
                s3lib.upload(s3, path, entry["bucket"], entry["key"], entry.get("md5"))

    def sync(self) -> int:
        """Mirror new or changed objects to disk and forget deleted ones; returns changes."""
        with self._sync_lock:
            s3 = self._client()
            index = self._load_index()
            seen: dict[str, dict[str, str]] = {}
            changes = 0
            for bucket in s3.list_buckets().get("Buckets", []):
                name = bucket["Name"]
                for obj in s3lib.list_objects(s3, name, ""):
                    ident = f"{name}/{obj.key}"
                    entry = index.get(ident)
                    if entry is None or entry["etag"] != obj.etag:
                        file_name = quote(ident, safe="")
                        self._objects_dir.mkdir(parents=True, exist_ok=True)
                        path = self._objects_dir / file_name
                        s3lib.download(s3, name, obj.key, path)
                        entry = {
                            "bucket": name,
                            "key": obj.key,
                            "etag": obj.etag,
                            "file": file_name,
                            "md5": s3lib.file_md5(path),
                        }
                        changes += 1
                    seen[ident] = entry
            for ident in index.keys() - seen.keys():
                (self._objects_dir / index[ident]["file"]).unlink(missing_ok=True)
                changes += 1
            if changes:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                self._index_path.write_text(json.dumps(seen, indent=1))
            return changes

    def _sync_loop(self, every: float) -> None:
        while not self._stop_syncing.wait(every):
            try:
                self.sync()
            except Exception:  # a failed sync is retried on the next beat
                log.exception("Mirroring the local S3 server to disk failed; retrying")


def running_endpoint(settings: Settings) -> str | None:
    """The endpoint of a loopback server another ``movielens`` process runs, if any."""
    path = settings.local_s3_dir / "endpoint.json"
    if not path.exists():
        return None
    url = json.loads(path.read_text())["endpoint_url"]
    try:
        urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - loopback URL we wrote
    except OSError:
        return None
    return url


@contextlib.contextmanager
def s3_endpoint(settings: Settings, sync_every: float | None = None) -> Iterator[str | None]:
    """Make sure the process talks to an S3 API, and yield its endpoint (None means AWS).

    A configured ``AWS_ENDPOINT_URL_S3`` or the prod target is used as is. Otherwise a loopback
    server already run by another ``movielens`` process is reused, else one is started here and
    stopped (its objects mirrored to disk) on exit. ``AWS_ENDPOINT_URL_S3`` is exported so
    boto3 clients and child processes (dbt, Dagster runs) find it.
    """
    if settings.s3_endpoint or settings.target == "prod":
        yield settings.s3_endpoint
        return
    url = running_endpoint(settings)
    if url:
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        with _exported_endpoint(url):
            yield url
        return
    server = LocalS3Server(settings.local_s3_dir)
    url = server.start(sync_every=sync_every)
    try:
        with _exported_endpoint(url):
            yield url
    finally:
        server.stop()


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
