"""The bounded listing (lib/landing_scan.py), the v2 cursor and the S3 event parsing, as pure code.

The "bucket" here is a sorted list of objects served page by page the way ``list_objects_v2``
does (``StartAfter``, ``MaxKeys``); the S3 API itself is exercised in the integration tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from movielens_assets.lib import sqs
from movielens_assets.lib.cursor import (
    CursorError,
    LandingCursor,
    ListingPass,
    PendingDelete,
    fingerprint,
)
from movielens_assets.lib.landing_scan import ListedPage, TickScan
from movielens_assets.lib.s3 import S3Object
from movielens_assets.settings import ConfigurationError, Settings

DATASETS = ("movies", "ratings")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = 3600


def obj(dataset: str, name: str, etag: str = "e", at: float = 0) -> S3Object:
    return S3Object(f"landing/{dataset}/{name}", etag, 1, T0 + timedelta(seconds=at))


class Bucket:
    """Objects by key, listed in key order from ``StartAfter``, counting the keys served."""

    def __init__(self, *objects: S3Object) -> None:
        self.objects = {o.key: o for o in objects}
        self.keys_served = 0

    def put(self, *objects: S3Object) -> None:
        self.objects.update({o.key: o for o in objects})

    def list_page(self, dataset: str, start_after: str | None, max_keys: int) -> ListedPage:
        prefix = f"landing/{dataset}/"
        keys = sorted(k for k in self.objects if k.startswith(prefix) and k > (start_after or ""))
        page = keys[:max_keys]
        self.keys_served += len(page)
        return ListedPage(
            objects=[self.objects[k] for k in page if k.endswith(".csv")],
            last_key=page[-1] if page else None,
            keys=len(page),
            truncated=len(keys) > max_keys,
        )


def tick(bucket: Bucket, cursor: LandingCursor, budget: int, now: float = 10 * HOUR):
    """One tick: tails then the pass; returns the new keys and the stored (re-parsed) cursor."""
    scan = TickScan(cursor, DATASETS, now=T0.timestamp() + now, horizon_seconds=HOUR)
    scan.list_tails(bucket.list_page, budget)
    scan.continue_pass(bucket.list_page, budget)
    new = sorted(o.key for objects in scan.new.values() for o in objects)
    return new, LandingCursor.parse(scan.cursor().serialize())


def test_a_bucket_bigger_than_the_budget_is_listed_over_ticks_each_object_once():
    bucket = Bucket(*(obj("ratings", f"r{n:03d}.csv", at=n) for n in range(25)))
    bucket.put(*(obj("movies", f"m{n:03d}.csv", at=n) for n in range(7)))
    cursor, reported, served = LandingCursor(), [], []

    for _ in range(6):
        before = bucket.keys_served
        new, cursor = tick(bucket, cursor, budget=10)
        reported += new
        served.append(bucket.keys_served - before)

    assert sorted(reported) == sorted(bucket.objects)  # 32 objects, each exactly once
    assert len(reported) == len(set(reported))
    assert max(served) <= 10


def test_once_a_pass_completes_objects_older_than_the_horizon_leave_the_cursor():
    old = [obj("ratings", f"old-{n:03d}.csv", at=n) for n in range(40)]
    bucket = Bucket(*old)
    _, cursor = tick(bucket, LandingCursor(), budget=100)
    assert cursor.object_count == 40  # all within an hour of the newest

    bucket.put(obj("ratings", "zz-new.csv", at=2 * HOUR))
    new, cursor = tick(bucket, cursor, budget=100)
    again, cursor = tick(bucket, cursor, budget=100)

    assert new == ["landing/ratings/zz-new.csv"]
    assert again == []
    assert cursor.object_count == 1  # the history counts as handled, only the new file is kept
    assert cursor.horizon == T0.timestamp() + 2 * HOUR - HOUR


def test_new_keys_sorting_after_the_last_key_are_found_next_tick_however_big_the_bucket():
    bucket = Bucket(*(obj("ratings", f"part-{n:05d}.csv", at=n) for n in range(60)))
    cursor = LandingCursor()
    for _ in range(8):  # one complete pass, ten keys a tick
        _, cursor = tick(bucket, cursor, budget=10)
    assert cursor.tails == {"ratings": "landing/ratings/part-00059.csv"}

    bucket.put(*(obj("ratings", f"part-{n:05d}.csv", at=100 + n) for n in range(60, 63)))
    new, cursor = tick(bucket, cursor, budget=10)

    assert new == [f"landing/ratings/part-{n:05d}.csv" for n in range(60, 63)]


def test_a_new_key_sorting_inside_an_already_listed_range_is_found_by_the_next_pass():
    bucket = Bucket(*(obj("ratings", f"b-{n:03d}.csv", at=n) for n in range(30)))
    cursor, reported = LandingCursor(), []
    for _ in range(4):
        new, cursor = tick(bucket, cursor, budget=10)
        reported += new
    bucket.put(obj("ratings", "a-early-name.csv", at=500))

    for _ in range(5):
        new, cursor = tick(bucket, cursor, budget=10)
        reported += new

    assert reported.count("landing/ratings/a-early-name.csv") == 1
    assert len(reported) == 31


def test_an_object_overwritten_during_a_long_pass_is_reported_once_per_content():
    bucket = Bucket(*(obj("ratings", f"r{n:03d}.csv", at=n) for n in range(30)))
    new, cursor = tick(bucket, LandingCursor(), budget=10)
    bucket.put(obj("ratings", "r000.csv", etag="e2", at=300))  # already listed, rewritten
    reported = list(new)
    for _ in range(6):
        new, cursor = tick(bucket, cursor, budget=10)
        reported += new

    assert reported.count("landing/ratings/r000.csv") == 2  # the first content, then the second
    assert len(reported) == 31


def test_a_notified_object_older_than_the_horizon_is_still_new():
    bucket = Bucket(obj("ratings", "a.csv", at=0), obj("ratings", "b.csv", at=3 * HOUR))
    _, cursor = tick(bucket, LandingCursor(), budget=100)
    long_upload = obj("ratings", "c.csv", at=HOUR)  # LastModified = when its upload began

    scan = TickScan(cursor, DATASETS, now=T0.timestamp() + 4 * HOUR, horizon_seconds=HOUR)

    assert scan.is_handled(long_upload)
    assert scan.consider("ratings", long_upload) is False  # the listing would skip it
    assert scan.consider("ratings", long_upload, notified=True) is True


def test_forgotten_objects_are_new_again():
    landed = obj("ratings", "a.csv", at=0)
    _, cursor = tick(Bucket(landed), LandingCursor(), budget=100)

    scan = TickScan(cursor, DATASETS, now=T0.timestamp(), horizon_seconds=HOUR)
    scan.forget({"ratings": frozenset({fingerprint(landed)})})

    assert scan.was_seen_before("ratings", landed) is False
    assert scan.consider("ratings", landed) is True


def test_the_v2_cursor_round_trips_and_a_v1_cursor_still_reads():
    cursor = LandingCursor(
        seen={"ratings": frozenset({fingerprint(obj("ratings", "a.csv"))})},
        horizon=1_767_225_600.5,
        tails={"ratings": "landing/ratings/a.csv"},
        listing=ListingPass(
            started_at=1_767_229_200.0,
            dataset="ratings",
            after="landing/ratings/a.csv",
            newest=1_767_229_100.0,
            listed={"ratings": frozenset({fingerprint(obj("ratings", "a.csv"))})},
        ),
        pending=(PendingDelete("s3-landing-1-abc", ("handle-1", "handle-2"), {}),),
    )
    v1 = json.dumps({"format": "movielens-s3-landing/1", "datasets": {}})

    assert LandingCursor.parse(cursor.serialize()) == cursor
    assert LandingCursor.parse(v1) == LandingCursor()
    with pytest.raises(CursorError, match="Clear it"):
        LandingCursor.parse(json.dumps({"format": "movielens-s3-landing/9", "datasets": {}}))


# S3 event messages


def event_body(key: str, name: str = "ObjectCreated:Put") -> str:
    record = {
        "eventName": name,
        "s3": {"bucket": {"name": "b"}, "object": {"key": key, "eTag": "x"}},
    }
    return json.dumps({"Records": [record]})


def test_a_notified_key_is_decoded_from_s3s_url_encoding():
    assert sqs.object_events(event_body("landing/ratings/ratings+2024%C3%A9+%2B1.csv")) == (
        sqs.ObjectEvent("b", "landing/ratings/ratings 2024é +1.csv", "x"),
    )


def test_an_event_wrapped_by_sns_is_read_and_other_bodies_bring_nothing():
    sns = json.dumps({"Type": "Notification", "Message": event_body("landing/tags/t.csv")})

    assert sqs.object_events(sns) == (sqs.ObjectEvent("b", "landing/tags/t.csv", "x"),)
    assert sqs.object_events(json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})) == ()
    assert sqs.object_events(event_body("landing/tags/t.csv", "ObjectRemoved:Delete")) == ()
    assert sqs.object_events("not json") == ()


# Settings


def test_the_queue_url_is_checked_and_makes_the_listing_a_small_safety_net():
    with_queue = Settings.from_env(
        {"MOVIELENS_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q"}
    )

    assert Settings.from_env({}).sqs_queue_url is None
    assert Settings.from_env({}).sensor_listing_budget == 10_000
    assert with_queue.sensor_listing_budget == 1_000
    assert (
        Settings.from_env({"MOVIELENS_SENSOR_LISTING_BUDGET": "50_000"}).sensor_listing_budget
        == 50_000
    )
    with pytest.raises(ConfigurationError, match="MOVIELENS_SQS_QUEUE_URL"):
        Settings.from_env({"MOVIELENS_SQS_QUEUE_URL": "movielens-landing"})
    with pytest.raises(ConfigurationError, match="MOVIELENS_SENSOR_LISTING_BUDGET"):
        Settings.from_env({"MOVIELENS_SENSOR_LISTING_BUDGET": "0"})
    with pytest.raises(ConfigurationError, match="MOVIELENS_SENSOR_HORIZON_SECONDS"):
        Settings.from_env({"MOVIELENS_SENSOR_HORIZON_SECONDS": "an hour"})


def test_over_passes_spread_across_ticks_the_cursor_keeps_only_the_recent_objects():
    bucket = Bucket(*(obj("ratings", f"part-{n:04d}.csv", at=n) for n in range(50)))
    bucket.put(*(obj("ratings", f"part-{n:04d}.csv", at=5 * HOUR + n) for n in range(50, 53)))
    cursor, reported, sizes = LandingCursor(), [], []

    for _ in range(20):  # six ticks a pass, ten keys a tick
        new, cursor = tick(bucket, cursor, budget=10)
        reported += new
        sizes.append(
            cursor.object_count
            + sum(len(f) for f in (cursor.listing.listed if cursor.listing else {}).values())
        )

    assert sorted(reported) == sorted(bucket.objects)
    assert cursor.object_count <= 3  # the three newest; the 50 older ones count as handled
    assert max(sizes[-6:]) <= 6
