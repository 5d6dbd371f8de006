"""Checks on a landed object before any COPY: not empty, and the exact header (ranged GET).

``SKIP_HEADER = 1`` would otherwise skip a wrong header silently.
"""

from __future__ import annotations

import zlib
from typing import Any

from movielens_assets.datasets import Dataset
from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import BadFileError
from movielens_assets.warehouse.csv_files import check_header, check_not_empty

HEADER_BYTES = 64 * 1024


def object_header(s3: Any, bucket: str, key: str) -> str:
    """The first line of an object, read with one ranged GET (gzip decompressed)."""
    body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")["Body"]
    raw = body.read()
    if key.lower().endswith(".gz"):
        try:
            raw = zlib.decompressobj(wbits=31).decompress(raw, HEADER_BYTES)
        except zlib.error as error:
            raise BadFileError(
                key,
                f"cannot be read as gzip ({error})",
                "Re-export the file; name it .csv.gz only if it is gzip-compressed.",
            ) from error
    return raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")


def check_object(dataset: Dataset, obj: S3Object, s3: Any, bucket: str) -> None:
    """Raise ``BadFileError`` for an empty object or a wrong header, before any COPY.

    ``SKIP_HEADER = 1`` would otherwise skip a wrong header silently.
    """
    check_not_empty(dataset, obj.key, obj.size)
    check_header(dataset, obj.key, object_header(s3, bucket, obj.key))
