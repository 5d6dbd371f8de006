"""The S3 landing sensor and its cursor, against a real S3 API on loopback (moto server)."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import dagster as dg
import pytest

from movielens_assets.datasets import DATASETS
from movielens_assets.defs.automation.schedules import raw_and_downstream_job
from movielens_assets.defs.automation.selection import (
    MissingCodeLocationError,
    raw_and_downstream_keys,
)
from movielens_assets.defs.automation.sensors import build_s3_landing_sensor
from movielens_assets.defs.raw.assets import build_raw_assets
from movielens_assets.lib.asset_keys import landing_key, raw_key
from movielens_assets.lib.cursor import CursorError, LandingCursor, diff_listing, run_key_for
from movielens_assets.lib.s3 import S3Object
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import ConfigurationError, Settings
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse

CSV = b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"


# Stand-ins for the dbt models, so the tests need no dbt manifest.
@dg.asset(key=["fct_ratings"], deps=[raw_key("ratings")])
def fct_ratings() -> None:
    """Stand-in for the dbt fact built from ratings."""


@dg.asset(key=["snap_tags"], deps=[raw_key("tags")])
def snap_tags() -> None:
    """Stand-in for the dbt snapshot of tags."""


@dg.asset(key=["movie_analysis"], deps=[fct_ratings, raw_key("movies")])
def movie_analysis() -> None:
    """Stand-in for a mart built from ratings and movies."""


@dg.asset_check(asset=fct_ratings)
def fct_ratings_is_unique() -> dg.AssetCheckResult:
    """Stand-in for a dbt test on the fact."""
    return dg.AssetCheckResult(passed=True)


class LandingSensor:
    """The sensor evaluated tick after tick, carrying its cursor like the daemon does."""

    def __init__(self, landing: LandingBucket, tmp_path) -> None:
        self.landing = landing
        self.sensor = build_s3_landing_sensor(Settings.from_env({}))
        self.defs = dg.Definitions(
            assets=[
                build_raw_assets(Settings.from_env({})),
                fct_ratings,
                snap_tags,
                movie_analysis,
            ],
            asset_checks=[fct_ratings_is_unique],
            jobs=[raw_and_downstream_job],
            sensors=[self.sensor],
            resources={
                "s3": landing,
                "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
            },
        )
        self.cursor: str | None = None
        self.instance = dg.DagsterInstance.ephemeral()

    def tick(self, cursor: str | None = None) -> dg.SensorResult:
        """One evaluation from ``cursor``, by default the one the previous tick returned."""
        context = dg.build_sensor_context(
            cursor=self.cursor if cursor is None else cursor,
            resources={"s3": self.landing},
            definitions=self.defs,
            instance=self.instance,
        )
        result = self.sensor(context)
        self.cursor = result.cursor or self.cursor
        return result

    def put(self, dataset: str, name: str, body: bytes = CSV) -> S3Object:
        key = self.landing.dataset_prefix(dataset) + name
        client = self.landing.get_client()
        client.put_object(Bucket=self.landing.bucket, Key=key, Body=body)
        head = client.head_object(Bucket=self.landing.bucket, Key=key)
        return S3Object(key, head["ETag"].strip('"'), len(body), head["LastModified"])

    def put_many(self, dataset: str, names: list[str]) -> None:
        client = self.landing.get_client()
        prefix = self.landing.dataset_prefix(dataset)

        def put(name: str) -> None:
            client.put_object(Bucket=self.landing.bucket, Key=prefix + name, Body=name.encode())

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, names))

    def empty(self) -> None:
        client = self.landing.get_client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.landing.bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=self.landing.bucket, Delete={"Objects": keys})


@pytest.fixture
def sensor(landing: LandingBucket, tmp_path, monkeypatch: pytest.MonkeyPatch):
    # One boto3 client for the test: each new one costs ~0.5 s (a session loads its models).
    client = landing.get_client()
    monkeypatch.setattr(LandingBucket, "get_client", lambda self: client)
    landing_sensor = LandingSensor(landing, tmp_path)
    yield landing_sensor
    landing_sensor.empty()  # keeps the shared server's mirror-on-stop short


def only_run(result: dg.SensorResult) -> dg.RunRequest:
    assert result.skip_reason is None
    assert len(result.run_requests) == 1
    return result.run_requests[0]


def obj(key: str, etag: str) -> S3Object:
    return S3Object(key=key, etag=etag, size=1)


# The sensor against loopback S3


def test_an_empty_landing_zone_skips_naming_every_prefix_checked(sensor):
    result = sensor.tick()

    assert result.run_requests == []
    message = result.skip_reason.skip_message
    for dataset in DATASETS:
        assert f"s3://{sensor.landing.bucket}/landing/{dataset}/" in message
    assert LandingCursor.parse(result.cursor).object_count == 0


def test_a_missing_bucket_skips_and_keeps_the_cursor(sensor, tmp_path):
    missing = LandingBucket(bucket="no-such-bucket-for-the-sensor", prefix="landing")

    result = LandingSensor(missing, tmp_path).tick()

    assert result.run_requests == []
    assert "s3://no-such-bucket-for-the-sensor/ does not exist yet" in (
        result.skip_reason.skip_message
    )
    assert "s3://no-such-bucket-for-the-sensor/landing/ratings/" in result.skip_reason.skip_message
    assert result.cursor is None


def test_new_files_request_one_run_of_their_raw_assets_everything_downstream_and_its_needs(
    sensor,
):
    ratings = sensor.put("ratings", "ratings-2024.csv")
    tags = sensor.put("tags", "tags-2024.csv.gz", b"not really gzip")
    sensor.put("tags", "README.txt", b"not a data file")

    run = only_run(sensor.tick())

    # raw_movies comes along: movie_analysis, downstream of ratings, also needs it
    assert run.asset_selection == [
        dg.AssetKey(["fct_ratings"]),
        dg.AssetKey(["movie_analysis"]),
        raw_key("movies"),
        raw_key("ratings"),
        raw_key("tags"),
        dg.AssetKey(["snap_tags"]),
    ]
    assert run.run_key == run_key_for([ratings, tags])
    assert {key: value for key, value in run.tags.items() if key.startswith("movielens/")} == {
        "movielens/dbt_tests": "new_rows",
        "movielens/datasets": "ratings,tags",
        "movielens/new_files": "2",
        "movielens/new_files.ratings": "1",
        "movielens/new_files.tags": "1",
    }
    job = sensor.defs.resolve_job_def("raw_and_downstream_job")
    subset = job.get_subset(asset_selection=set(run.asset_selection))
    assert subset.asset_layer.selected_asset_keys == set(run.asset_selection)
    assert {check.name for check in subset.asset_layer.asset_graph.asset_check_keys} == {
        "fct_ratings_is_unique"
    }


def test_new_files_are_reported_on_their_landing_assets_with_their_names_and_bytes(sensor):
    sensor.put("ratings", "ratings-b.csv", CSV)
    sensor.put("ratings", "ratings-c.csv", CSV + b"2,2,3.5,964982703\n")
    sensor.put("tags", "tags.csv", b"userId,movieId,tag,timestamp\n1,1,funny,964982703\n")
    sensor.put("tags", "README.txt", b"not a data file")
    time.sleep(1.1)  # S3 keeps whole seconds: the last file is the newest by time, not by name
    sensor.put("ratings", "ratings-a.csv", CSV + b"3,3,2.5,964982703\n")

    first = sensor.tick()
    again = sensor.tick()

    client = sensor.landing.get_client()
    events = {event.asset_key: event for event in first.asset_events}
    assert set(events) == {landing_key("ratings"), landing_key("tags")}
    for dataset in ("ratings", "tags"):
        prefix = f"landing/{dataset}/"
        listed = client.list_objects_v2(Bucket=sensor.landing.bucket, Prefix=prefix)["Contents"]
        data = [item for item in listed if item["Key"].endswith(".csv")]
        metadata = events[landing_key(dataset)].metadata
        assert isinstance(events[landing_key(dataset)], dg.AssetMaterialization)
        assert sorted(metadata["files"].value) == sorted(
            item["Key"].removeprefix(prefix) for item in data
        )
        assert metadata["files_new"].value == len(data)
        assert metadata["bytes"].value == sum(item["Size"] for item in data)
        assert metadata["s3_uri"].value == f"s3://{sensor.landing.bucket}/{prefix}"
        newest = max(data, key=lambda item: item["LastModified"])
        assert [i for i in data if i["LastModified"] == newest["LastModified"]] == [newest]
        assert metadata["newest_key"].value == newest["Key"]
    assert events[landing_key("ratings")].metadata["newest_key"].value.endswith("ratings-a.csv")
    assert again.asset_events == []


def test_two_files_landing_in_the_same_second_each_trigger_exactly_once(sensor):
    sensor.tick()  # warm up: the first evaluation builds the code location
    for attempt in range(3):  # a slow tick can push the second file into the next second
        while datetime.now(UTC).microsecond > 100_000:  # start just after a second begins
            time.sleep(0.01)
        first = sensor.put("ratings", f"batch-{attempt}-b.csv", CSV + b"2,2,3.5,964982703\n")
        first_run = only_run(sensor.tick())
        second = sensor.put("ratings", f"batch-{attempt}-a.csv", CSV + b"3,3,2.5,964982703\n")
        second_run = only_run(sensor.tick())
        if first.last_modified == second.last_modified:
            break
    third = sensor.tick()

    assert first.last_modified == second.last_modified  # one second, S3's resolution
    assert first_run.run_key == run_key_for([first])
    assert second_run.run_key == run_key_for([second])  # sorts first, landed later
    assert third.run_requests == []
    assert f"{2 * (attempt + 1)} seen before" in third.skip_reason.skip_message


def test_two_files_landing_before_one_tick_share_one_run(sensor):
    first = sensor.put("ratings", "part-1.csv", CSV + b"2,2,3.5,964982703\n")
    second = sensor.put("ratings", "part-2.csv", CSV + b"3,3,2.5,964982703\n")

    run = only_run(sensor.tick())

    assert run.run_key == run_key_for([first, second])
    assert run.tags["movielens/new_files.ratings"] == "2"


def test_an_overwritten_file_triggers_once_and_the_same_content_again_nothing(sensor):
    original = sensor.put("ratings", "ratings.csv", CSV)
    only_run(sensor.tick())

    rewritten = sensor.put("ratings", "ratings.csv", CSV + b"2,2,3.5,964982703\n")
    overwrite_run = only_run(sensor.tick())
    sensor.put("ratings", "ratings.csv", CSV + b"2,2,3.5,964982703\n")
    same_content = sensor.tick()

    assert rewritten.etag != original.etag
    assert overwrite_run.run_key == run_key_for([rewritten])
    assert overwrite_run.tags["movielens/new_files"] == "1"
    assert same_content.run_requests == []
    assert LandingCursor.parse(sensor.cursor).object_count == 1


def test_more_than_a_thousand_files_are_each_seen_exactly_once_in_one_run_per_tick(sensor):
    sensor.put_many("ratings", [f"burst-{number:04d}.csv" for number in range(700)])
    first_tick = sensor.tick()
    first_listing = sensor.landing.list_dataset("ratings")
    sensor.put_many("ratings", [f"burst-{number:04d}.csv" for number in range(700, 1205)])
    second_tick = sensor.tick()
    full_listing = sensor.landing.list_dataset("ratings")
    third_tick = sensor.tick()

    assert len(first_listing) == 700
    assert len(full_listing) == 1205  # two listing pages
    later = [o for o in full_listing if o.key not in {f.key for f in first_listing}]
    assert only_run(first_tick).run_key == run_key_for(first_listing)
    assert only_run(first_tick).tags["movielens/new_files"] == "700"
    assert only_run(second_tick).run_key == run_key_for(later)
    assert only_run(second_tick).tags["movielens/new_files"] == "505"
    assert third_tick.run_requests == []
    assert "1205 seen before" in third_tick.skip_reason.skip_message
    assert len(sensor.cursor) < 1205 * 11 + 200


def test_a_repeated_tick_with_the_same_cursor_skips(sensor):
    sensor.put("movies", "movies.csv")
    only_run(sensor.tick())

    cursor = sensor.cursor
    again = sensor.tick(cursor)

    assert again.run_requests == []
    assert again.cursor == cursor


def test_a_tick_replayed_from_an_old_cursor_requests_the_same_run_key(sensor):
    sensor.put("links", "links.csv")
    first = only_run(sensor.tick(cursor=""))

    replayed = only_run(sensor.tick(cursor=""))

    assert replayed.run_key == first.run_key


def test_a_deleted_file_leaves_the_cursor_and_triggers_nothing(sensor):
    kept = sensor.put("ratings", "kept.csv", CSV)
    sensor.put("ratings", "deleted.csv", CSV + b"2,2,3.5,964982703\n")
    only_run(sensor.tick())

    sensor.landing.get_client().delete_object(
        Bucket=sensor.landing.bucket, Key="landing/ratings/deleted.csv"
    )
    after_delete = sensor.tick()

    assert after_delete.run_requests == []
    assert LandingCursor.parse(sensor.cursor).object_count == 1
    assert diff_listing({"ratings": [kept]}, LandingCursor.parse(sensor.cursor))[0] == {}


def test_a_cursor_from_something_else_fails_the_tick_saying_how_to_reset_it(sensor):
    with pytest.raises(CursorError, match="Clear it"):
        sensor.tick(cursor='{"last_modified": 1718000000}')


def test_a_tick_outside_its_code_location_says_how_to_give_it_one(sensor):
    sensor.put("ratings", "ratings.csv")
    context = dg.build_sensor_context(resources={"s3": sensor.landing})

    with pytest.raises(MissingCodeLocationError, match="definitions="):
        sensor.sensor(context)


# The cursor, as pure functions


def test_a_listing_in_any_order_gives_the_same_new_objects_and_cursor():
    listing = [obj("landing/ratings/b.csv", "e2"), obj("landing/ratings/a.csv", "e1")]

    forward = diff_listing({"ratings": listing}, LandingCursor())
    backward = diff_listing({"ratings": listing[::-1]}, LandingCursor())

    assert forward == backward
    assert [o.key for o in forward[0]["ratings"]] == [
        "landing/ratings/a.csv",
        "landing/ratings/b.csv",
    ]


def test_a_new_key_sorting_before_every_seen_key_is_still_new():
    _, cursor = diff_listing({"ratings": [obj("landing/ratings/z.csv", "e1")]}, LandingCursor())

    new, _ = diff_listing(
        {"ratings": [obj("landing/ratings/a.csv", "e2"), obj("landing/ratings/z.csv", "e1")]},
        cursor,
    )

    assert new == {"ratings": [obj("landing/ratings/a.csv", "e2")]}


def test_an_empty_listing_yields_nothing_and_an_empty_cursor():
    _, cursor = diff_listing({"ratings": [obj("landing/ratings/a.csv", "e1")]}, LandingCursor())

    new, after = diff_listing({name: [] for name in DATASETS}, cursor)

    assert new == {}
    assert after.object_count == 0


def test_diffing_again_with_the_returned_cursor_yields_nothing():
    listing = {"ratings": [obj(f"landing/ratings/{n}.csv", f"e{n}") for n in range(50)]}
    _, cursor = diff_listing(listing, LandingCursor())

    new, again = diff_listing(listing, LandingCursor.parse(cursor.serialize()))

    assert new == {}
    assert again == cursor


def test_an_object_deleted_then_landed_again_is_new_again():
    landed = obj("landing/tags/t.csv", "e1")
    _, seen = diff_listing({"tags": [landed]}, LandingCursor())
    _, after_delete = diff_listing({"tags": []}, seen)

    new, _ = diff_listing({"tags": [landed]}, after_delete)

    assert new == {"tags": [landed]}


def test_the_run_key_names_the_objects_not_their_order_or_quotes():
    first, second = obj("landing/a.csv", "e1"), obj("landing/b.csv", "e2")

    assert run_key_for([first, second]) == run_key_for([second, obj("landing/a.csv", '"e1"')])
    assert run_key_for([first]) != run_key_for([obj("landing/a.csv", "e3")])
    assert run_key_for([first, second]).startswith("s3-landing-2-")


@pytest.mark.parametrize("objects", [1_205, 100_000])
def test_the_cursor_costs_about_eleven_characters_per_object(objects):
    listing = {
        "ratings": [obj(f"landing/ratings/part-{n:06d}.csv", f"{n:032x}") for n in range(objects)]
    }
    _, cursor = diff_listing(listing, LandingCursor())

    serialized = cursor.serialize()

    assert objects * 10.6 < len(serialized) < objects * 10.7 + 120
    assert LandingCursor.parse(serialized) == cursor


# Status and interval


@pytest.mark.parametrize(
    ("target", "override", "expected"),
    [
        ("local", None, dg.DefaultSensorStatus.RUNNING),
        ("prod", None, dg.DefaultSensorStatus.STOPPED),
        ("prod", "running", dg.DefaultSensorStatus.RUNNING),
        ("local", "Stopped", dg.DefaultSensorStatus.STOPPED),
    ],
)
def test_the_sensor_runs_by_default_locally_and_waits_against_aws(target, override, expected):
    environ = {"MOVIELENS_SENSOR_DEFAULT": override} if override else {}

    settings = Settings.from_env({"MOVIELENS_TARGET": target, **environ})
    assert settings.sensor_running == (expected == dg.DefaultSensorStatus.RUNNING)
    assert build_s3_landing_sensor(settings).default_status == expected


def test_the_interval_defaults_to_thirty_seconds_and_follows_the_environment():
    assert Settings.from_env({}).sensor_interval == 30
    assert Settings.from_env({"MOVIELENS_SENSOR_INTERVAL": "5"}).sensor_interval == 5
    sensor = build_s3_landing_sensor(Settings.from_env({"MOVIELENS_SENSOR_INTERVAL": "90"}))
    assert sensor.minimum_interval_seconds == 90
    assert sensor.name == "s3_landing_sensor"


def test_a_tick_that_waits_on_the_queue_counts_its_wait_within_the_interval():
    queue = {"MOVIELENS_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q"}
    waiting = Settings.from_env({**queue, "MOVIELENS_SQS_WAIT_SECONDS": "20"})
    no_queue = Settings.from_env({"MOVIELENS_SQS_WAIT_SECONDS": "20"})

    assert build_s3_landing_sensor(waiting).minimum_interval_seconds == 10
    assert build_s3_landing_sensor(no_queue).minimum_interval_seconds == 30  # nothing to wait on


@pytest.mark.parametrize(
    "environ",
    [{"MOVIELENS_SENSOR_DEFAULT": "paused"}, {"MOVIELENS_SENSOR_INTERVAL": "half a minute"}],
)
def test_a_bad_sensor_setting_names_the_variable(environ):
    with pytest.raises(ConfigurationError, match=next(iter(environ))):
        Settings.from_env(environ)


def test_a_run_also_builds_what_its_checks_read_when_that_is_elsewhere_in_the_graph(tmp_path):
    """A relationships test on fct_ratings reads dim_users, built from tags: landing only
    ratings in a fresh warehouse must still build dim_users, or the test has no table."""

    @dg.asset(key=["dim_users"], deps=[raw_key("tags")])
    def dim_users() -> None:
        """Stand-in for the user dimension."""

    @dg.asset_check(asset=fct_ratings, additional_deps=[dim_users])
    def fct_ratings_users_exist() -> dg.AssetCheckResult:
        """Stand-in for the relationships test."""
        return dg.AssetCheckResult(passed=True)

    defs = dg.Definitions(
        assets=[build_raw_assets(Settings.from_env({})), fct_ratings, dim_users],
        asset_checks=[fct_ratings_users_exist],
        jobs=[raw_and_downstream_job],
        resources={
            "s3": LandingBucket(bucket="unused", prefix="landing"),
            "warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
        },
    )

    class Context:
        repository_def = defs.get_repository_def()
        instance = dg.DagsterInstance.ephemeral()  # nothing materialized yet

    assert raw_and_downstream_keys(Context(), ["ratings"]) == [
        dg.AssetKey(["dim_users"]),
        dg.AssetKey(["fct_ratings"]),
        raw_key("ratings"),
        raw_key("tags"),
    ]
