"""The SQS queue that S3 notifies of landed files: receive, read the S3 events, delete.

S3 sends one message per object event to the queue (a bucket notification with
``QueueConfigurations``; through SNS the S3 event is wrapped in the SNS envelope, read here too).
A message's records name the bucket, the key (URL-encoded, as S3 sends it) and the ETag. The
first message on a new queue is an ``s3:TestEvent`` with no records.

Receiving a message hides it for the queue's visibility timeout; a message not deleted within it
is delivered again. The sensor deletes a message only once what it caused is recorded, so a
crash in between costs a second delivery, never a lost file.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import boto3

MAX_MESSAGES_PER_TICK = 100
"""Messages one tick receives at most (ten receives of ten): the rest wait for the next tick."""
BATCH = 10
"""SQS's most messages per receive and per delete batch."""


@dataclass(frozen=True)
class ObjectEvent:
    """One S3 record of a message: an object was created (or overwritten)."""

    bucket: str
    key: str
    etag: str


@dataclass(frozen=True)
class QueueMessage:
    """One received message: its identity, the handle that deletes it, its S3 records."""

    message_id: str
    receipt_handle: str
    events: tuple[ObjectEvent, ...]


@functools.lru_cache(maxsize=8)
def queue_client(queue_url: str) -> Any:
    """A boto3 SQS client for ``queue_url``: the queue's URL names its endpoint and region.

    Credentials come from the standard AWS variables, as for S3. One client per queue and
    process (a new boto3 client costs about half a second; clients are thread-safe).
    """
    parts = urlsplit(queue_url)
    host = parts.hostname or ""
    region = None
    if host.startswith("sqs.") and host.endswith(".amazonaws.com"):
        region = host.split(".")[1]
    return boto3.client("sqs", endpoint_url=f"{parts.scheme}://{parts.netloc}", region_name=region)


def object_events(body: str) -> tuple[ObjectEvent, ...]:
    """The ``ObjectCreated`` records of one message body (none for a test event or non-S3 body)."""
    try:
        document = json.loads(body)
    except ValueError:
        return ()
    if not isinstance(document, dict):
        return ()
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        return object_events(document["Message"])  # S3 -> SNS -> SQS
    events = []
    for record in document.get("Records") or []:
        if not isinstance(record, dict):
            continue
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        obj = s3.get("object") or {}
        if bucket and obj.get("key"):
            events.append(
                ObjectEvent(
                    bucket=bucket,
                    key=unquote_plus(obj["key"]),
                    etag=str(obj.get("eTag") or "").strip('"'),
                )
            )
    return tuple(events)


def receive(
    client: Any, queue_url: str, limit: int = MAX_MESSAGES_PER_TICK, wait_seconds: int = 0
) -> list[QueueMessage]:
    """Up to ``limit`` messages, receiving until the queue answers with none.

    ``wait_seconds``: how long the first receive waits for a message (SQS long polling); the
    next ones drain what is there without waiting.
    """
    messages: list[QueueMessage] = []
    while len(messages) < limit:
        answer = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(BATCH, limit - len(messages)),
            WaitTimeSeconds=0 if messages else wait_seconds,
        )
        batch = answer.get("Messages") or []
        if not batch:
            break
        messages.extend(
            QueueMessage(
                message_id=item["MessageId"],
                receipt_handle=item["ReceiptHandle"],
                events=object_events(item.get("Body") or ""),
            )
            for item in batch
        )
    return messages


def delete(client: Any, queue_url: str, receipt_handles: Iterable[str]) -> list[str]:
    """Delete messages by receipt handle, ten at a time; returns the SQS errors, if any.

    A handle that is no longer valid (the message was delivered again since) fails harmlessly:
    its new delivery is recognised as already handled and deleted then.
    """
    handles: Sequence[str] = list(dict.fromkeys(receipt_handles))
    errors: list[Any] = []
    for start in range(0, len(handles), BATCH):
        entries = [
            {"Id": str(number), "ReceiptHandle": handle}
            for number, handle in enumerate(handles[start : start + BATCH])
        ]
        answer = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        errors.extend(
            f"{failure.get('Code')}: {failure.get('Message')}"
            for failure in answer.get("Failed") or []
        )
    return errors
