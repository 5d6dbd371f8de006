"""The loopback S3 server process: moto's API on 127.0.0.1, every object's bytes on disk.

``python -m movielens_assets.tools.local_s3_server STATE_DIR --port N --parent PID`` serves moto's
whole API (S3, and SQS for S3 event notifications) until SIGTERM, or until its parent dies
(``PR_SET_PDEATHSIG``). ``local_s3.LocalS3Server`` starts it; its first stdout line says how the
start went (``listening <url>``, ``busy``, or ``error <message>``).

Persistence is done on writes, never by polling: moto reports every object created or removed
through ``moto.s3.notifications.send_event`` (the call behind S3 event notifications, made
whether or not the bucket has any) and buckets through ``S3Backend.create_bucket`` /
``delete_bucket``; each request's changes are written to ``LocalS3Store`` before its response
leaves, so an acknowledged write survives a SIGKILL. Once written, a key's bytes are read from
its file (``_DiskBuffer``) instead of moto's in-memory buffer, so memory does not grow with the
bytes stored. At start the store is read back into moto with the recorded ETags.

This is the one module that uses moto's internals (``FakeKey``'s buffer, the notification
hook); ``movielens_assets_tests/integration/test_local_s3.py`` fails if a moto upgrade changes
them. Not kept across restarts: object versions other than the latest, tags, ACLs, bucket
configuration (notifications included: whoever wants S3 events sets them up after a start, as
SQS queues are not kept either) and unfinished multipart uploads.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import gc
import io
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from movielens_assets.tools.local_s3_store import (
    LocalS3StateError,
    LocalS3Store,
    StoredBucket,
)

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LARGE_REQUEST = 8 * 1024 * 1024
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1024 * 1024)}
"""For the server process: buffers over 1 MiB (request bodies, object bytes) are mapped on
their own and returned to the system when freed, so RSS falls back after a large upload
(glibc's default threshold adapts upwards and keeps such buffers in the heap)."""
BUSY_EXIT = 3
STATE_ERROR_EXIT = 2
OBJECT_EVENTS = ("s3:ObjectCreated:", "s3:ObjectRemoved:")
NOT_RECORDED = (
    b"<Error><Code>InternalError</Code><Message>The write was not recorded on disk; "
    b"try again</Message></Error>"
)
KEY_ATTRIBUTES = (
    "checksum_algorithm",
    "checksum_value",
    "checksum_type",
    "checksum_parts",
    "website_redirect_location",
    "encryption",
    "kms_key_id",
)
"""Plain ``FakeKey`` attributes kept beside the metadata and storage class."""


class _DiskBuffer:
    """A stored object's bytes, read from its data file; stands in for moto's buffer.

    moto only seeks and reads a key's buffer once it is written; writing to it again would mean
    the file no longer matches its row, so that raises. The file is opened per read, so 20,000
    keys hold no file descriptors.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._position = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        else:
            self._position = self.path.stat().st_size + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._position)
                data = handle.read(size)
        except FileNotFoundError as error:  # replaced or deleted while this read was under way
            raise LocalS3StateError(
                f"{self.path} is gone: the object was replaced or deleted; read it again"
            ) from error
        self._position += len(data)
        return data

    def write(self, data: bytes) -> int:
        raise io.UnsupportedOperation(f"{self.path} holds a stored object and is never rewritten")

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation(f"{self.path} holds a stored object and is never rewritten")

    def close(self) -> None:
        """Nothing to close: the file is opened per read and belongs to the store."""


class _CollectedAfterwards:
    """A response body after which the garbage collector runs (once it has been sent).

    moto leaves a large response's bytes in reference cycles; collecting them once sent keeps
    the server's RSS from holding on to a download's size.
    """

    def __init__(self, body: Iterable[bytes]) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close:
            close()
        self._body = []
        gc.collect()


class _Pending(threading.local):
    """What the current request changed: buckets by name, keys by (bucket name, key)."""

    def __init__(self) -> None:
        self.buckets: dict[str, Any] = {}
        self.keys: dict[tuple[str, str], Any] = {}


class MotoDiskPersistence:
    """Keeps moto's S3 objects in a ``LocalS3Store``: restores them, then records each write."""

    def __init__(self, store: LocalS3Store) -> None:
        self.store = store
        self._pending = _Pending()
        self._flush_lock = threading.Lock()
        self._active = 0
        self._active_lock = threading.Condition()

    # Start --------------------------------------------------------------------------------

    def restore(self) -> int:
        """Put every stored bucket and object back into moto; returns the objects restored."""
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        backends: dict[str, Any] = {}
        for bucket in self.store.buckets():
            backend = s3_backends[bucket.account_id][get_partition(bucket.region)]
            backend.create_bucket(bucket.name, bucket.region)
            backends[bucket.name] = backend
        restored = 0
        for stored in self.store.objects():
            owner = backends.get(stored.bucket)
            if owner is None:  # a row of a bucket that is gone: not served
                continue
            key: Any = owner.put_object(
                stored.bucket, stored.key, b"", etag=stored.etag, disable_notification=True
            )
            key._value_buffer.close()
            key._value_buffer = _DiskBuffer(stored.path)
            key.contentsize = stored.size
            key.last_modified = stored.last_modified
            attributes: dict[str, Any] = dict(stored.attributes)
            key.set_metadata(dict(attributes.pop("metadata", {})))
            if attributes.get("storage_class"):
                key.set_storage_class(attributes.pop("storage_class"))
            for name in KEY_ATTRIBUTES:
                if attributes.get(name) is not None:
                    setattr(key, name, attributes[name])
            restored += 1
        return restored

    def install(self) -> None:
        """Hook moto's object events and bucket calls so that each write is recorded."""
        from moto.s3 import notifications
        from moto.s3.models import S3Backend

        send_event = notifications.send_event
        create_bucket = S3Backend.create_bucket
        delete_bucket = S3Backend.delete_bucket
        pending = self._pending

        def recorded_send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
            if str(getattr(event_name, "value", event_name)).startswith(OBJECT_EVENTS):
                pending.keys[(bucket.name, key.name)] = bucket
            send_event(account_id, event_name, bucket, key)

        def recorded_create_bucket(backend: Any, bucket_name: str, *args: Any, **kwargs: Any):
            bucket = create_bucket(backend, bucket_name, *args, **kwargs)
            pending.buckets[bucket_name] = backend
            return bucket

        def recorded_delete_bucket(backend: Any, bucket_name: str):
            deleted = delete_bucket(backend, bucket_name)
            pending.buckets[bucket_name] = backend
            return deleted

        notifications.send_event = recorded_send_event
        setattr(S3Backend, "create_bucket", recorded_create_bucket)  # noqa: B010 - a hook
        setattr(S3Backend, "delete_bucket", recorded_delete_bucket)  # noqa: B010 - a hook

    # Each request -------------------------------------------------------------------------

    def flush(self) -> int:
        """Write what this thread's request changed (the keys' state now, not the events');
        returns the bytes written."""
        from moto.s3.models import FakeKey

        buckets, keys = self._pending.buckets, self._pending.keys
        if not buckets and not keys:
            return 0
        written = 0
        self._pending.buckets, self._pending.keys = {}, {}
        with self._flush_lock:
            gone = []
            for name, backend in buckets.items():
                bucket = backend.buckets.get(name)
                if bucket is None:
                    gone.append(name)
                else:
                    self.store.put_bucket(StoredBucket(name, bucket.account_id, bucket.region_name))
            for (bucket_name, key_name), bucket in keys.items():
                current = bucket.keys.get(key_name)
                if isinstance(current, FakeKey):
                    written += self._write_key(bucket_name, current)
                else:  # deleted, or a delete marker on top
                    self.store.delete_object(bucket_name, key_name)
            for name in gone:
                self.store.delete_bucket(name)
        return written

    def _write_key(self, bucket_name: str, key: Any) -> int:
        with key.lock:
            buffer = key._value_buffer
            if isinstance(buffer, _DiskBuffer):  # written by a request that finished later
                return 0
            attributes = {
                "metadata": dict(key.metadata),
                "storage_class": key.storage_class,
                **{name: getattr(key, name, None) for name in KEY_ATTRIBUTES},
            }
            path = self.store.put_object(
                bucket_name,
                key.name,
                buffer,
                etag=key.etag.strip('"'),
                last_modified=key.last_modified,
                attributes=attributes,
            )
            key._value_buffer = _DiskBuffer(path)
            buffer.close()
        if key.multipart is not None:  # its parts' bytes; a restored key has none either
            key.multipart.dispose()
            key.multipart = None
        return key.contentsize

    def wsgi(self, app: Callable) -> Callable:
        """``app`` with each request's writes recorded before its response is returned."""

        def persisted(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
            sent: list[int] = []

            def recording_start_response(status: str, headers: list, *args: Any) -> Any:
                sizes = [int(value) for name, value in headers if name.lower() == "content-length"]
                sent[:] = sizes
                return start_response(status, headers, *args)

            with self._active_lock:
                self._active += 1
            written = 0
            try:
                response = app(environ, recording_start_response)
            finally:  # what a failed request changed is recorded all the same
                try:
                    written = self.flush()
                except Exception:
                    log.exception("Recording a write of the loopback S3 on disk failed")
                    start_response(
                        "500 Internal Server Error",
                        [("Content-Type", "application/xml")],
                        sys.exc_info(),
                    )
                    response = [NOT_RECORDED]
                finally:
                    with self._active_lock:
                        self._active -= 1
                        self._active_lock.notify_all()
            if max(written, int(environ.get("CONTENT_LENGTH") or 0)) > LARGE_REQUEST:
                gc.collect()  # moto leaves a large upload's buffers in reference cycles
            if max(sent, default=0) > LARGE_REQUEST:
                return _CollectedAfterwards(response)
            return response

        return persisted

    def wait_idle(self, timeout: float) -> None:
        """Wait until no request is being handled (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._active_lock:
            while self._active and time.monotonic() < deadline:
                self._active_lock.wait(deadline - time.monotonic())


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:
        sys.exit(0)


def _say(line: str) -> None:
    """One line to the starting process, then stdout goes nowhere (nobody reads it further)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def serve(state_dir: Path, port: int) -> int:
    """Lock the folder, restore it, serve until SIGTERM; returns the exit code."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = (state_dir / "lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _say("busy")
        return BUSY_EXIT
    try:
        store = LocalS3Store(state_dir)
    except LocalS3StateError as error:
        _say(f"error {error}")
        return STATE_ERROR_EXIT
    persistence = MotoDiskPersistence(store)
    restored = persistence.restore()
    persistence.install()
    app = persistence.wsgi(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    endpoint = f"http://127.0.0.1:{server.server_port}"
    endpoint_file = state_dir / "endpoint.json"
    partial = endpoint_file.with_suffix(".partial")
    partial.write_text(json.dumps({"endpoint_url": endpoint, "pid": os.getpid()}))
    partial.rename(endpoint_file)
    signal.signal(
        signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start()
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the parent's
    log.info("Loopback S3 on %s: %d objects restored from %s", endpoint, restored, state_dir)
    _say(f"listening {endpoint}")
    try:
        server.serve_forever()
    finally:
        persistence.wait_idle(timeout=30)
        endpoint_file.unlink(missing_ok=True)
        store.close()
        lock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the server process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent", type=int, help="exit when this process dies")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="loopback S3 server: %(message)s")
    if args.parent:
        _die_with_parent(args.parent)
    return serve(args.state_dir, args.port)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Everything is on disk and closed: skip tearing down moto's objects one by one (seconds
    # with 20,000 keys, each warning that it was not disposed of).
    os._exit(code)
