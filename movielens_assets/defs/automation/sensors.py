"""The S3 landing sensor: files landing in S3 start one run of RAW and everything downstream.

Each tick reads the S3 notifications queued in SQS, if a queue is configured (``lib/sqs.py``),
and lists the landing bucket within a budget of keys (``lib/landing_scan.py``), deduplicates
both by object identity against the cursor (``lib/cursor.py``), and, when something is new, requests
one run of ``raw_and_downstream_job`` restricted to the affected ``raw/raw_<dataset>`` assets
and everything downstream of them. A burst of files is one run per tick, however many files.
What a run builds is ``selection.py``'s. The tick also records a materialization of each
affected ``landing/<dataset>`` asset: the
files arrived from outside Dagster (``movielens land``, another system), and the asset page
shows them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import dagster as dg
from botocore.exceptions import ClientError

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.automation.schedules import raw_and_downstream_job
from movielens_assets.defs.automation.selection import raw_and_downstream_keys
from movielens_assets.defs.dbt.test_scope import NEW_ROWS, TESTS_TAG
from movielens_assets.lib import sqs
from movielens_assets.lib.asset_keys import landing_key
from movielens_assets.lib.cursor import LandingCursor, PendingDelete, fingerprint, run_key_for
from movielens_assets.lib.landing_scan import ListedPage, PageLister, TickScan
from movielens_assets.lib.redact import redacted_errors
from movielens_assets.lib.s3 import S3Object
from movielens_assets.lib.sqs import ObjectEvent
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import DEFAULT_HORIZON_SECONDS, DEFAULT_LISTING_BUDGET, Settings

SENSOR_NAME = "s3_landing_sensor"
TAG_PREFIX = "movielens"


def run_tags(new_by_dataset: Mapping[str, Sequence[S3Object]]) -> dict[str, str]:
    """What the run page shows about why it started (the datasets and their new file counts),
    and that its dbt tests may read only the new rows."""
    tags = {
        TESTS_TAG: NEW_ROWS,  # tests read the rows loaded since the last run (test_scope.py)
        f"{TAG_PREFIX}/datasets": ",".join(sorted(new_by_dataset)),
        f"{TAG_PREFIX}/new_files": str(sum(len(objects) for objects in new_by_dataset.values())),
    }
    for dataset, objects in sorted(new_by_dataset.items()):
        tags[f"{TAG_PREFIX}/new_files.{dataset}"] = str(len(objects))
    return tags


def landing_materialization(
    dataset: str, new: Sequence[S3Object], s3: LandingBucket
) -> dg.AssetMaterialization:
    """The ``s3/<dataset>`` landing asset got ``new`` objects in its folder.

    A materialization, not an observation: the folder's content changed (new data arrived), which
    is what the asset's materializations record when Dagster uploads files itself.
    """
    prefix = s3.dataset_prefix(dataset)
    newest = max(new, key=lambda obj: (obj.last_modified is not None, obj.last_modified, obj.key))
    return dg.AssetMaterialization(
        asset_key=landing_key(dataset),
        description=f"{len(new)} new file(s) seen by {SENSOR_NAME}.",
        metadata={
            "s3_uri": dg.MetadataValue.url(s3.dataset_uri(dataset)),
            "files": dg.MetadataValue.json([obj.key.removeprefix(prefix) for obj in new]),
            "files_new": len(new),
            "bytes": sum(obj.size for obj in new),
            "newest_key": newest.key,
        },
    )


RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
"""The tags the daemon puts on a run a sensor requested (Dagster's own names)."""


def run_is_recorded(instance: dg.DagsterInstance, run_key: str) -> bool:
    """Whether the daemon recorded the run this sensor requested under ``run_key``."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: SENSOR_NAME}), limit=1
    )
    return bool(runs)


_S3_CLIENTS: dict[tuple[LandingBucket, str | None], Any] = {}


def s3_client(s3: LandingBucket) -> Any:
    """One S3 client per resource configuration and process, kept from tick to tick.

    ``S3Resource.get_client`` builds a boto3 session, resource and client on every call, which
    costs more than an idle tick's listing (about 0.5 s; seconds on a busy machine). boto3
    clients are thread-safe and refresh their credentials themselves. The endpoint boto3 reads
    from the environment is part of the key.
    """
    key = (s3, Settings.from_env().s3_endpoint)
    if key not in _S3_CLIENTS:
        _S3_CLIENTS[key] = s3.get_client()
    return _S3_CLIENTS[key]


def _page_lister(client: Any, s3: LandingBucket) -> PageLister:
    """One page of a dataset's listing, from ``StartAfter``, as the scan wants it."""

    def list_page(dataset: str, start_after: str | None, max_keys: int) -> ListedPage:
        request = {"Bucket": s3.bucket, "Prefix": s3.dataset_prefix(dataset), "MaxKeys": max_keys}
        if start_after:
            request["StartAfter"] = start_after
        answer = client.list_objects_v2(**request)
        contents = answer.get("Contents", [])
        return ListedPage(
            objects=[
                S3Object(
                    key=item["Key"],
                    etag=item["ETag"].strip('"'),
                    size=item["Size"],
                    last_modified=item.get("LastModified"),
                )
                for item in contents
                if s3.is_data_file(item["Key"])
            ],
            last_key=contents[-1]["Key"] if contents else None,
            keys=len(contents),
            truncated=bool(answer.get("IsTruncated")),
        )

    return list_page


def _dataset_of(event: ObjectEvent, s3: LandingBucket) -> str | None:
    """The dataset a notified object belongs to, or None (another bucket, folder or file)."""
    if event.bucket != s3.bucket or not s3.is_data_file(event.key):
        return None
    for name in DATASETS:
        prefix = s3.dataset_prefix(name)
        if event.key.startswith(prefix) and "/" not in event.key[len(prefix) :]:
            return name
    return None


def _current_object(client: Any, s3: LandingBucket, key: str) -> S3Object | None:
    """The object under ``key`` now (its ETag may be newer than the message's), or None."""
    try:
        head = client.head_object(Bucket=s3.bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return S3Object(
        key=key,
        etag=head["ETag"].strip('"'),
        size=head["ContentLength"],
        last_modified=head.get("LastModified"),
    )


def receive_notifications(
    context: dg.SensorEvaluationContext,
    scan: TickScan,
    s3: LandingBucket,
    client: Any,
    queue_url: str,
    wait_seconds: int = 0,
) -> list[str]:
    """Read the queue into ``scan``; return the receipt handles of messages that brought news.

    ``wait_seconds``: how long to wait for a first message (``MOVIELENS_SQS_WAIT_SECONDS``).

    Each notified object is checked with a HEAD (the file may have been deleted or overwritten
    since): what is there now is what counts. Messages that bring nothing new (a duplicate, an
    object seen by an earlier, recorded tick, a deleted file, another folder, S3's test event)
    are deleted at once; the others only on a later tick, once their run is found recorded.
    """
    queue = sqs.queue_client(queue_url)
    messages = sqs.receive(queue, queue_url, wait_seconds=wait_seconds)
    handled_now: list[Any] = []
    deferred: list[Any] = []
    for message in messages:
        brings_news = False
        for event in message.events:
            dataset = _dataset_of(event, s3)
            obj = _current_object(client, s3, event.key) if dataset else None
            if dataset is None or obj is None:
                continue
            # a notification is the truth even for an object older than the horizon
            if scan.consider(dataset, obj, notified=True) or not scan.was_seen_before(dataset, obj):
                brings_news = True
        (deferred if brings_news else handled_now).append(message.receipt_handle)
    for error in sqs.delete(queue, queue_url, handled_now):
        context.log.warning(f"Deleting an already handled queue message failed ({error}).")
    if messages:
        context.log.info(
            f"{len(messages)} queue message(s): {len(deferred)} with new files, "
            f"{len(handled_now)} deleted at once (nothing new)."
        )
    return deferred


def confirm_pending(
    context: dg.SensorEvaluationContext,
    scan: TickScan,
    pending: Sequence[PendingDelete],
    queue_url: str | None,
) -> None:
    """Delete the messages of runs the daemon recorded; forget the objects of runs it did not.

    The daemon stores a tick's cursor only after it submitted the tick's run requests, so a
    pending entry in the stored cursor normally finds its run. If it does not (the run was never
    created, or deleted), its messages are left to come back after the queue's visibility
    timeout and its objects are unseen, so that the next delivery or listing requests them again.
    """
    if not pending:
        return
    confirmed: list[str] = []
    for entry in pending:
        if run_is_recorded(context.instance, entry.run_key):
            confirmed.extend(entry.receipt_handles)
        else:
            context.log.warning(
                f"No run with run key {entry.run_key} was found; its "
                f"{len(entry.receipt_handles)} queue message(s) are left for redelivery."
            )
            scan.forget(entry.objects)
    if confirmed and queue_url:
        queue = sqs.queue_client(queue_url)
        for error in sqs.delete(queue, queue_url, confirmed):
            context.log.warning(
                f"Deleting a queue message failed ({error}); it will be redelivered."
            )


def evaluate_landing(
    context: dg.SensorEvaluationContext,
    s3: LandingBucket,
    queue_url: str | None = None,
    listing_budget: int = DEFAULT_LISTING_BUDGET,
    horizon_seconds: int = DEFAULT_HORIZON_SECONDS,
    queue_wait_seconds: int = 0,
) -> dg.SensorResult:
    """One tick: confirm the last tick's run, read the queue, list within the budget, request.

    See ``lib/landing_scan.py`` for how the listing stays bounded and ``lib/sqs.py`` for the
    queue. Whatever is new over all sources is one run request, keyed by its objects.
    """
    prefixes = ", ".join(s3.dataset_uri(name) for name in DATASETS)
    client = s3_client(s3)
    previous = LandingCursor.parse(context.cursor)
    scan = TickScan(previous, list(DATASETS), now=time.time(), horizon_seconds=horizon_seconds)
    confirm_pending(context, scan, previous.pending, queue_url)
    list_page = _page_lister(client, s3)
    try:
        deferred = (
            receive_notifications(context, scan, s3, client, queue_url, queue_wait_seconds)
            if queue_url
            else []
        )
        scan.list_tails(list_page, listing_budget)
        scan.continue_pass(list_page, listing_budget)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"The bucket s3://{s3.bucket}/ does not exist yet; checked {prefixes}."
            )
        )
    new_by_dataset = {
        name: sorted(objects, key=lambda obj: (obj.key, obj.etag))
        for name, objects in scan.new.items()
    }
    if not new_by_dataset:
        cursor = scan.cursor()
        where = "listing complete" if scan.pass_completed else f"listing at {scan.dataset}"
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"No new objects in {prefixes} ({cursor.object_count} seen before; "
                f"{scan.keys_listed} keys listed, {where})."
            ),
            cursor=cursor.serialize(),
        )
    new_objects = list(chain.from_iterable(new_by_dataset.values()))
    context.log.info(
        f"{len(new_objects)} new object(s): "
        + ", ".join(f"{name}: {len(objects)}" for name, objects in sorted(new_by_dataset.items()))
        + "; first keys: "
        + ", ".join(obj.key for obj in new_objects[:5])
    )
    run_key = run_key_for(new_objects)
    run_request = dg.RunRequest(
        run_key=run_key,
        asset_selection=raw_and_downstream_keys(context, sorted(new_by_dataset)),
        tags=run_tags(new_by_dataset),
    )
    landed = [
        landing_materialization(name, objects, s3)
        for name, objects in sorted(new_by_dataset.items())
    ]
    pending = (
        [
            PendingDelete(
                run_key=run_key,
                receipt_handles=tuple(deferred),
                objects={
                    name: frozenset(fingerprint(obj) for obj in objects)
                    for name, objects in new_by_dataset.items()
                },
            )
        ]
        if deferred
        else []
    )
    return dg.SensorResult(
        run_requests=[run_request], asset_events=landed, cursor=scan.cursor(pending).serialize()
    )


def build_s3_landing_sensor(settings: Settings) -> dg.SensorDefinition:
    """The S3 landing sensor, its interval and default status from ``settings``."""

    queue_wait = (settings.sqs_wait_seconds or 0) if settings.sqs_queue_url else 0

    @dg.sensor(
        name=SENSOR_NAME,
        job=raw_and_downstream_job,
        # Dagster counts the interval from a tick's start: a tick that waited on the queue has
        # used that much of it, and the next one may start right after it.
        minimum_interval_seconds=max(1, settings.sensor_interval - queue_wait),
        default_status=dg.DefaultSensorStatus.RUNNING
        if settings.sensor_running
        else dg.DefaultSensorStatus.STOPPED,
    )
    def s3_landing_sensor(
        context: dg.SensorEvaluationContext, s3: LandingBucket
    ) -> dg.SensorResult:
        """Start a run when files land under ``s3://<bucket>/<prefix>/<dataset>/``.

        Every tick reads the queue of S3 notifications (``MOVIELENS_SQS_QUEUE_URL``) and lists
        the dataset prefixes within ``MOVIELENS_SENSOR_LISTING_BUDGET`` keys, comparing keys and
        ETags with the cursor: a new file, or a file overwritten with new content, is seen
        exactly once.
        New files start one run of their ``raw/raw_<dataset>`` assets and everything downstream
        (run key derived from the files, so a repeated tick never starts a second run); the tick
        otherwise skips, naming the prefixes it checked.

        Default status: RUNNING with ``MOVIELENS_TARGET=local`` (the embedded default), STOPPED
        with ``prod`` (real AWS; turn it on in the UI). ``MOVIELENS_SENSOR_DEFAULT=running`` or
        ``stopped`` overrides that; ``MOVIELENS_SENSOR_INTERVAL`` sets the seconds between ticks
        (default 30). With ``MOVIELENS_SQS_WAIT_SECONDS`` a tick waits that long on the queue,
        and the next may start the interval less that wait after it began: the queue is
        listened to nearly all the time. A status set in the UI wins over the default.
        """
        with redacted_errors():  # a tick's error is stored; S3's may name a URI with a password
            return evaluate_landing(
                context,
                s3,
                queue_url=settings.sqs_queue_url,
                listing_budget=settings.sensor_listing_budget,
                horizon_seconds=settings.sensor_horizon_seconds,
                queue_wait_seconds=queue_wait,
            )

    return s3_landing_sensor


@dg.definitions
def defs() -> dg.Definitions:
    """The S3 landing sensor, configured from the environment."""
    return dg.Definitions(sensors=[build_s3_landing_sensor(Settings.from_env())])
