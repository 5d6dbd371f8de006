"""The embedded default's S3 -> SQS notifications: a queue on the loopback server, wired up.

``movielens dev`` calls :func:`setup_landing_queue` once the loopback server runs: it creates the
queue ``movielens-landing`` (moto serves SQS on the same endpoint as S3), points the landing
bucket's ``s3:ObjectCreated:*`` notifications for the landing prefix at it, and returns the
queue URL for ``MOVIELENS_SQS_QUEUE_URL``. Both steps are idempotent (the server keeps them in
memory only, so they are redone on every start). On AWS the same two steps are the bucket's
event notification and the queue's policy (README "Event-driven landing", ``snowflake/setup.sql``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.redact import redact
from movielens_assets.settings import SQS_MAX_WAIT_SECONDS, Settings

QUEUE_NAME = "movielens-landing"
MIN_VISIBILITY_TIMEOUT = 120
"""Seconds a received message stays hidden at least: the sensor deletes it on its next tick."""


class NotificationSetupError(RuntimeError):
    """The S3 endpoint could not set up the queue or the bucket notification."""


def visibility_timeout(settings: Settings) -> int:
    """A visibility timeout well above the sensor's interval (its next tick deletes)."""
    return max(MIN_VISIBILITY_TIMEOUT, 4 * settings.sensor_interval)


def notification_configuration(queue_arn: str, prefix: str) -> dict[str, Any]:
    """The bucket notification: objects created under ``prefix/`` are sent to the queue."""
    return {
        "QueueConfigurations": [
            {
                "Id": "movielens-landing",
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {
                    "Key": {
                        "FilterRules": [{"Name": "prefix", "Value": f"{prefix}/" if prefix else ""}]
                    }
                },
            }
        ]
    }


def _queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    """The URL of queue ``name``, created if missing, with ``attributes`` set either way."""
    try:
        queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if "NonExistentQueue" not in str(error.response.get("Error", {}).get("Code")):
            raise
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    return queue_url


def setup_landing_queue(settings: Settings, endpoint_url: str, queue_name: str = QUEUE_NAME) -> str:
    """Create the queue and the bucket notification on ``endpoint_url``; return the queue URL."""
    try:
        sqs = boto3.client("sqs", endpoint_url=endpoint_url)
        queue_url = _queue(
            sqs, queue_name, {"VisibilityTimeout": str(visibility_timeout(settings))}
        )
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        s3 = boto3.client("s3", endpoint_url=endpoint_url)
        s3lib.ensure_bucket(s3, settings.bucket)
        s3.put_bucket_notification_configuration(
            Bucket=settings.bucket,
            NotificationConfiguration=notification_configuration(
                arn["Attributes"]["QueueArn"], settings.prefix
            ),
        )
    except (BotoCoreError, ClientError) as error:
        raise NotificationSetupError(
            f"Could not set up S3 notifications to SQS on {redact(endpoint_url)} ({error}); "
            "the sensor finds new files by listing instead. Set MOVIELENS_SQS_QUEUE_URL to use "
            "a queue of your own."
        ) from error
    return queue_url


def landing_queue_env(
    settings: Settings, endpoint_url: str | None, progress: Callable[[str], None] = print
) -> dict[str, str]:
    """``MOVIELENS_SQS_QUEUE_URL`` for the processes ``movielens dev`` starts, if it sets one up.

    Only on the loopback server and when no queue is configured: with AWS (or a queue URL of
    your own) nothing changes. A server that cannot notify leaves the sensor listing, said once.
    """
    if settings.sqs_queue_url or endpoint_url is None or settings.target == "prod":
        return {}
    try:
        queue_url = setup_landing_queue(settings, endpoint_url)
    except NotificationSetupError as error:
        progress(f"movielens dev: {error}")
        return {}
    env = {"MOVIELENS_SQS_QUEUE_URL": queue_url}
    wait = dev_queue_wait_seconds(settings)
    if wait:
        env["MOVIELENS_SQS_WAIT_SECONDS"] = str(wait)
    progress(
        f"movielens dev: S3 notifications of s3://{settings.bucket}/{settings.prefix}/ "
        f"go to {queue_url}" + (f"; each tick waits up to {wait} s for one" if wait else "")
    )
    return env


def dev_queue_wait_seconds(settings: Settings) -> int:
    """The queue wait ``movielens dev`` gives its sensor: what the user set, else up to 20 s
    but 10 s less than the sensor interval (30 s by default: 20 s), so that ticks keep their
    pace; 0 for intervals of 10 s or less."""
    if settings.sqs_wait_seconds is not None:
        return settings.sqs_wait_seconds
    return max(0, min(SQS_MAX_WAIT_SECONDS, settings.sensor_interval - 10))
