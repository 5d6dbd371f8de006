"""Small S3 helpers over boto3: listing, content-addressed uploads, streaming downloads.

Clients come from ``boto3.client("s3")`` so the standard AWS variables (``AWS_ENDPOINT_URL_S3``,
credentials, region) apply unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

PART_SIZE = 64 * 1024 * 1024
"""Multipart part size. Fixed so that the same file always gets the same ETag."""
TRANSFER = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)
CHUNK = 8 * 1024 * 1024
MD5_METADATA = "content-md5-hex"
"""User metadata key holding the MD5 of the whole object (multipart ETags are not MD5s)."""


@dataclass(frozen=True)
class S3Object:
    """One object of a listing: its identity is (key, etag)."""

    key: str
    etag: str
    size: int
    last_modified: datetime | None = None


def client() -> Any:
    """A boto3 S3 client configured from the environment."""
    return boto3.client("s3")


def ensure_bucket(s3: Any, bucket: str) -> None:
    """Create ``bucket`` if it does not exist (for the loopback server; a no-op on AWS)."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
        s3.create_bucket(Bucket=bucket)


def list_objects(s3: Any, bucket: str, prefix: str) -> list[S3Object]:
    """Every object under ``prefix``, through all pages of the listing, sorted by key."""
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            objects.append(
                S3Object(
                    key=item["Key"],
                    etag=item["ETag"].strip('"'),
                    size=item["Size"],
                    last_modified=item.get("LastModified"),
                )
            )
    return sorted(objects, key=lambda obj: obj.key)


def file_md5(path: Path) -> str:
    """The hex MD5 of a local file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def object_md5(s3: Any, bucket: str, obj: S3Object) -> str | None:
    """The MD5 of an object's content if S3 can tell without downloading it."""
    if "-" not in obj.etag:
        return obj.etag
    head = s3.head_object(Bucket=bucket, Key=obj.key)
    return head.get("Metadata", {}).get(MD5_METADATA)


def upload(s3: Any, path: Path, bucket: str, key: str, md5: str | None = None) -> None:
    """Upload a file with fixed multipart settings, recording its MD5 as object metadata."""
    extra = {"Metadata": {MD5_METADATA: md5 or file_md5(path)}}
    s3.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=TRANSFER)


def dataset_prefix(prefix: str, dataset: str) -> str:
    """The key prefix of one dataset's landing folder under ``prefix``, e.g. ``landing/ratings/``
    (``ratings/`` when ``prefix`` is empty)."""
    return f"{prefix}/{dataset}/" if prefix else f"{dataset}/"


def download(s3: Any, bucket: str, key: str, destination: Path) -> int:
    """Stream one object to ``destination`` with a single GET; returns the bytes written.

    One streamed GET is much faster against the loopback server than ranged parallel reads
    and keeps memory flat whatever the object's size.
    """
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    written = 0
    with destination.open("wb") as handle:
        for chunk in body.iter_chunks(CHUNK):
            handle.write(chunk)
            written += len(chunk)
    return written
