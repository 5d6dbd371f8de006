"""The loopback S3's state on disk: one file per object's bytes, one SQLite row per object.

Layout of the state folder (``$MOVIELENS_HOME/s3``)::

    FORMAT            "movielens-local-s3 2": what wrote the folder
    store.sqlite3     buckets and objects (key, ETag, size, last modified, metadata)
    data/xx/<uuid>    each object's bytes, in a file of its own that is never rewritten
    tmp/              bytes being written; emptied at start
    lock              held (flock) by the server process using the folder
    endpoint.json     where that server listens

A write costs one file written and renamed plus one SQLite transaction, whatever the bucket
holds; nothing runs between writes. An object's row names its data file, so replacing an object
writes a new file, commits the row, then removes the old file: a process killed at any point
leaves either the old object or the new one, and at worst a file no row names, which the next
start removes.

The first store (before this one) mirrored objects as ``index.json`` + ``objects/``; such a
folder is imported once, with its ETags as recorded, then its old files are removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

FORMAT = "movielens-local-s3 2"
"""The first line of ``FORMAT``; another value is a folder this code does not know."""
COPY_CHUNK = 8 * 1024 * 1024
DEFAULT_ACCOUNT_ID = "123456789012"
"""moto's account for requests whose access key is not an AWS-shaped one (ours)."""
DEFAULT_REGION = "us-east-1"
SCHEMA = """
create table if not exists buckets (
    name text primary key,
    account_id text not null,
    region text not null
);
create table if not exists objects (
    bucket text not null,
    key text not null,
    data_file text not null,
    etag text not null,
    size integer not null,
    last_modified text not null,
    attributes text not null,
    primary key (bucket, key)
);
"""


class LocalS3StateError(RuntimeError):
    """The state folder cannot be used as it is; the message names it and says what to do."""


@dataclass(frozen=True)
class StoredBucket:
    """A bucket as stored: moto needs its account and region to recreate it."""

    name: str
    account_id: str
    region: str


@dataclass(frozen=True)
class StoredObject:
    """An object as stored. ``etag`` is without quotes (``<md5>`` or ``<md5>-<parts>``)."""

    bucket: str
    key: str
    path: Path
    etag: str
    size: int
    last_modified: datetime
    attributes: dict[str, Any] = field(default_factory=dict)
    """Metadata, content type, checksum and storage class, as the server recorded them."""


class LocalS3Store:
    """The state folder of one loopback S3 server (one process at a time; threads welcome)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._data_dir = state_dir / "data"
        self._tmp_dir = state_dir / "tmp"
        self._lock = threading.Lock()
        self._check_format()
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            state_dir / "store.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._db.execute("pragma journal_mode = wal")
        self._db.execute("pragma synchronous = normal")
        self._db.executescript(SCHEMA)
        (state_dir / "FORMAT").write_text(FORMAT + "\n")
        self._import_first_format()
        self._remove_stray_files()

    def _check_format(self) -> None:
        marker = self.state_dir / "FORMAT"
        if not marker.exists():
            return
        written = marker.read_text().splitlines()[:1]
        if written != [FORMAT]:
            raise LocalS3StateError(
                f"{self.state_dir} was written by another version of the loopback S3 "
                f"({marker} says {written[0] if written else 'nothing'!r}, this one writes "
                f"{FORMAT!r}). Move the folder away (its objects' bytes are the files under "
                f"{self._data_dir}) or delete it, then land the files again."
            )

    def close(self) -> None:
        """Close the database (every write is already on disk)."""
        with self._lock:
            self._db.close()

    # Reading, at start -------------------------------------------------------------------

    def buckets(self) -> list[StoredBucket]:
        """Every stored bucket."""
        with self._lock:
            rows = self._db.execute("select name, account_id, region from buckets order by name")
            return [StoredBucket(*row) for row in rows.fetchall()]

    def objects(self) -> Iterator[StoredObject]:
        """Every stored object, bucket by bucket, in key order."""
        with self._lock:
            rows = self._db.execute(
                "select bucket, key, data_file, etag, size, last_modified, attributes "
                "from objects order by bucket, key"
            ).fetchall()
        for bucket, key, data_file, etag, size, last_modified, attributes in rows:
            yield StoredObject(
                bucket=bucket,
                key=key,
                path=self._data_dir / data_file,
                etag=etag,
                size=size,
                last_modified=datetime.fromisoformat(last_modified),
                attributes=json.loads(attributes),
            )

    def object_count(self) -> int:
        """How many objects are stored."""
        with self._lock:
            return self._db.execute("select count(*) from objects").fetchone()[0]

    # Writing, one call per S3 write -------------------------------------------------------

    def put_bucket(self, bucket: StoredBucket) -> None:
        """Record a bucket (idempotent)."""
        with self._lock:
            self._db.execute(
                "insert or replace into buckets values (?, ?, ?)",
                (bucket.name, bucket.account_id, bucket.region),
            )

    def delete_bucket(self, name: str) -> None:
        """Forget a bucket and whatever objects are still recorded in it."""
        with self._lock:
            files = self._db.execute(
                "select data_file from objects where bucket = ?", (name,)
            ).fetchall()
            self._db.execute("begin")
            self._db.execute("delete from objects where bucket = ?", (name,))
            self._db.execute("delete from buckets where name = ?", (name,))
            self._db.execute("commit")
        for (data_file,) in files:
            (self._data_dir / data_file).unlink(missing_ok=True)

    def put_object(
        self,
        bucket: str,
        key: str,
        source: BinaryIO,
        etag: str,
        last_modified: datetime,
        attributes: dict[str, Any],
    ) -> Path:
        """Copy ``source`` (from its start) into a new data file and record the object.

        Returns the data file, which holds the object's bytes from now on.
        """
        name = uuid.uuid4().hex
        partial = self._tmp_dir / name
        size = 0
        with partial.open("wb") as handle:
            source.seek(0)
            for block in iter(lambda: source.read(COPY_CHUNK), b""):
                handle.write(block)
                size += len(block)
        data_file = f"{name[:2]}/{name}"
        path = self._data_dir / data_file
        path.parent.mkdir(exist_ok=True)
        partial.rename(path)
        with self._lock:
            previous = self._db.execute(
                "select data_file from objects where bucket = ? and key = ?", (bucket, key)
            ).fetchone()
            self._db.execute(
                "insert or replace into objects values (?, ?, ?, ?, ?, ?, ?)",
                (
                    bucket,
                    key,
                    data_file,
                    etag,
                    size,
                    last_modified.isoformat(),
                    json.dumps(attributes),
                ),
            )
        if previous:
            (self._data_dir / previous[0]).unlink(missing_ok=True)
        return path

    def delete_object(self, bucket: str, key: str) -> None:
        """Forget an object and remove its bytes (a no-op when it is not stored)."""
        with self._lock:
            previous = self._db.execute(
                "select data_file from objects where bucket = ? and key = ?", (bucket, key)
            ).fetchone()
            self._db.execute("delete from objects where bucket = ? and key = ?", (bucket, key))
        if previous:
            (self._data_dir / previous[0]).unlink(missing_ok=True)

    # Housekeeping, at start ---------------------------------------------------------------

    def _remove_stray_files(self) -> None:
        """Remove partial writes and data files no row names (a write killed half-way)."""
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        self._tmp_dir.mkdir()
        with self._lock:
            named = {row[0] for row in self._db.execute("select data_file from objects")}
        for path in self._data_dir.glob("*/*"):
            if f"{path.parent.name}/{path.name}" not in named:
                path.unlink(missing_ok=True)

    def _import_first_format(self) -> None:
        """Import a folder the first mirror wrote (``index.json`` + ``objects/``), once."""
        index_path = self.state_dir / "index.json"
        if not index_path.exists():
            return
        old_objects = self.state_dir / "objects"
        try:
            index = json.loads(index_path.read_text())
            entries = [
                (entry["bucket"], entry["key"], entry["etag"], entry["file"], entry.get("md5"))
                for entry in index.values()
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise LocalS3StateError(
                f"{index_path} (the loopback S3's first format) cannot be read: {error}. "
                f"Its objects' bytes are the files in {old_objects}: move {self.state_dir} "
                "away (or delete it) and land the files again."
            ) from error
        imported = missing = 0
        with self._lock:
            self._db.execute("begin")
            for bucket, _key, _etag, _file, _md5 in entries:
                self._db.execute(
                    "insert or ignore into buckets values (?, ?, ?)",
                    (bucket, DEFAULT_ACCOUNT_ID, DEFAULT_REGION),
                )
            for bucket, key, etag, file_name, md5 in entries:
                source = old_objects / file_name
                if not source.is_file():
                    missing += 1
                    continue
                name = uuid.uuid4().hex
                data_file = f"{name[:2]}/{name}"
                (self._data_dir / name[:2]).mkdir(exist_ok=True)
                os.link(source, self._data_dir / data_file)
                stat = source.stat()
                attributes = {"metadata": {"content-type": "binary/octet-stream"}}
                if md5:
                    attributes["metadata"]["x-amz-meta-content-md5-hex"] = md5
                self._db.execute(
                    "insert or replace into objects values (?, ?, ?, ?, ?, ?, ?)",
                    (
                        bucket,
                        key,
                        data_file,
                        etag,
                        stat.st_size,
                        datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None).isoformat(),
                        json.dumps(attributes),
                    ),
                )
                imported += 1
            self._db.execute("commit")
        index_path.unlink()
        shutil.rmtree(old_objects, ignore_errors=True)
        log.warning(
            "Imported %d objects from the first loopback S3 format in %s (%d listed in its "
            "index had no file and are gone)",
            imported,
            self.state_dir,
            missing,
        )
