"""The landing sensor fed by S3 event notifications through SQS, on a real loopback moto server.

The server (S3 + SQS, moto) delivers the bucket's notifications to the queue itself. Each test
plays the daemon with the public APIs: it evaluates the sensor tick after tick on one Dagster
instance, carrying the cursor the previous tick returned (or dropping it: a crash), and runs
what a tick requests with ``execute_in_process`` on that instance, tagged with the run key as
the daemon does, unless a run with that key exists already (the daemon's own guard). The runs
are real RAW loads into a DuckDB file, so "loaded once" is checked on the table's rows.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from urllib.parse import quote

import boto3
import dagster as dg
import duckdb
import pytest
from moto.server import ThreadedMotoServer

from movielens_assets.defs.automation.schedules import raw_and_downstream_job
from movielens_assets.defs.automation.sensors import (
    RUN_KEY_TAG,
    SENSOR_NAME,
    SENSOR_NAME_TAG,
    build_s3_landing_sensor,
)
from movielens_assets.defs.raw.assets import build_raw_assets
from movielens_assets.lib import sqs
from movielens_assets.lib.cursor import LandingCursor
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import Settings
from movielens_assets.tools.notifications import (
    dev_queue_wait_seconds,
    landing_queue_env,
    setup_landing_queue,
)
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse

VISIBILITY_SECONDS = 2
"""The test queues' visibility timeout: a message received and not deleted returns after it."""


def ratings_csv(*rows: tuple[int, int, float, int]) -> bytes:
    lines = ["userId,movieId,rating,timestamp"] + [",".join(map(str, row)) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def data_rows(body: bytes) -> int:
    """Rows of a CSV body, counted with Python's csv module (the independent oracle)."""
    return len(list(csv.reader(io.StringIO(body.decode())))) - 1


@pytest.fixture(scope="module")
def endpoint() -> str:
    """A moto server (S3 and SQS on one endpoint) on 127.0.0.1, for this module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class Daemon:
    """The sensor ticked on one instance, its requested runs executed like the daemon would."""

    def __init__(
        self, environ: dict[str, str], instance: dg.DagsterInstance, tmp_path, endpoint: str
    ) -> None:
        self.endpoint = endpoint
        settings = Settings.from_env(environ)
        self.landing = LandingBucket(bucket=settings.bucket, prefix=settings.prefix)
        self.queue_url = settings.sqs_queue_url
        self.sensor = build_s3_landing_sensor(settings)
        self.warehouse_path = tmp_path / "warehouse.duckdb"
        self.defs = dg.Definitions(
            assets=[build_raw_assets(settings)],
            jobs=[raw_and_downstream_job],
            sensors=[self.sensor],
            resources={
                "s3": self.landing,
                "warehouse": DuckDBWarehouse(path=str(self.warehouse_path)),
            },
        )
        self.instance = instance
        self.cursor: str | None = None
        self.launched: list[str] = []

    def tick(self, keep: bool = True) -> dg.SensorResult:
        """One evaluation from the stored cursor; ``keep=False`` drops its result (a crash)."""
        context = dg.build_sensor_context(
            cursor=self.cursor,
            resources={"s3": self.landing},
            definitions=self.defs,
            instance=self.instance,
        )
        result = self.sensor(context)
        if keep and result.cursor is not None:
            self.cursor = result.cursor
        return result

    def run(self, result: dg.SensorResult) -> list[str]:
        """Launch the requested runs whose run key has no run yet; return their run keys."""
        job = self.defs.resolve_job_def(raw_and_downstream_job.name)
        launched = []
        for request in result.run_requests:
            existing = self.instance.get_runs(
                filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}), limit=1
            )
            if existing:
                continue
            outcome = job.execute_in_process(
                instance=self.instance,
                asset_selection=request.asset_selection,
                tags={
                    **request.tags,
                    RUN_KEY_TAG: request.run_key,
                    SENSOR_NAME_TAG: SENSOR_NAME,
                },
            )
            assert outcome.success
            launched.append(request.run_key)
        self.launched.extend(launched)
        return launched

    def tick_and_run(self) -> tuple[dg.SensorResult, list[str]]:
        result = self.tick()
        return result, self.run(result)

    def put(self, name: str, body: bytes) -> dict:
        key = self.landing.dataset_prefix("ratings") + name
        client = self.landing.get_client()
        client.put_object(Bucket=self.landing.bucket, Key=key, Body=body)
        return client.head_object(Bucket=self.landing.bucket, Key=key) | {"Key": key}

    def messages_left(self) -> int:
        """Messages on the queue, visible or in flight (received, not deleted)."""
        attributes = boto3.client("sqs", endpoint_url=self.endpoint).get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def rows(self) -> int:
        if not self.warehouse_path.exists():
            return 0
        with duckdb.connect(str(self.warehouse_path), read_only=True) as connection:
            return connection.execute("select count(*) from raw.raw_ratings").fetchone()[0]

    def ledger(self) -> list[tuple[str, int]]:
        with duckdb.connect(str(self.warehouse_path), read_only=True) as connection:
            return connection.execute(
                "select s3_key, rows_loaded from raw.load_ledger order by s3_key"
            ).fetchall()


def s3_event(bucket: str, key: str, etag: str) -> str:
    """The body S3 sends for one created object (the key URL-encoded, as S3 does)."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote(key), "eTag": etag}},
    }
    return json.dumps({"Records": [record]})


@pytest.fixture
def daemon(endpoint, tmp_path, monkeypatch, request):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    bucket = "sqs-" + request.node.name.lower().replace("_", "-")[:50].strip("-")
    environ = {"MOVIELENS_S3_BUCKET": bucket, "MOVIELENS_S3_PREFIX": "landing"}
    queue_url = setup_landing_queue(Settings.from_env(environ), endpoint, queue_name=bucket)
    boto3.client("sqs", endpoint_url=endpoint).set_queue_attributes(
        QueueUrl=queue_url, Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)}
    )
    client = LandingBucket(bucket=bucket, prefix="landing").get_client()
    monkeypatch.setattr(LandingBucket, "get_client", lambda self: client)
    with dg.instance_for_test() as instance:
        landing_daemon = Daemon(
            {**environ, "MOVIELENS_SQS_QUEUE_URL": queue_url}, instance, tmp_path, endpoint
        )
        yield landing_daemon


def test_the_loopback_setup_sends_each_file_landed_under_the_prefix_to_the_queue(daemon, endpoint):
    body = ratings_csv((1, 1, 4.0, 964982703))
    landed = daemon.put("ratings 2024+été.csv", body)
    daemon.landing.get_client().put_object(
        Bucket=daemon.landing.bucket, Key="elsewhere/ratings.csv", Body=body
    )

    answer = boto3.client("sqs", endpoint_url=endpoint).receive_message(
        QueueUrl=daemon.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    )

    events = [event for m in answer["Messages"] for event in sqs.object_events(m["Body"])]
    assert events == [
        sqs.ObjectEvent(daemon.landing.bucket, landed["Key"], landed["ETag"].strip('"'))
    ]  # the landing prefix only, the key decoded from S3's URL encoding


def test_a_notified_file_starts_one_run_loads_once_and_its_message_goes_after_the_run(daemon):
    body = ratings_csv((1, 1, 4.0, 964982703), (1, 2, 3.5, 964982704))
    daemon.put("ratings-1.csv", body)

    first, launched = daemon.tick_and_run()
    in_flight = daemon.messages_left()
    second, relaunched = daemon.tick_and_run()
    third, _ = daemon.tick_and_run()

    assert len(launched) == 1
    assert first.run_requests[0].tags["movielens/new_files"] == "1"
    assert in_flight == 1  # received, not deleted: the run was not recorded yet
    assert LandingCursor.parse(daemon.cursor).pending == ()
    assert second.run_requests == [] and relaunched == []
    assert daemon.messages_left() == 0  # deleted once the run was found
    assert third.run_requests == []
    assert daemon.rows() == data_rows(body)
    assert daemon.ledger() == [("landing/ratings/ratings-1.csv", data_rows(body))]


def test_a_notification_finds_a_file_before_the_listing_reaches_it(daemon, endpoint):
    small = Daemon(
        {
            "MOVIELENS_S3_BUCKET": daemon.landing.bucket,
            "MOVIELENS_SQS_QUEUE_URL": daemon.queue_url,
            "MOVIELENS_SENSOR_LISTING_BUDGET": "3",
        },
        daemon.instance,
        daemon.warehouse_path.parent / "small",
        endpoint,
    )
    small.warehouse_path.parent.mkdir()
    client = daemon.landing.get_client()
    for number in range(10):  # movies is listed before ratings
        client.put_object(
            Bucket=daemon.landing.bucket, Key=f"landing/movies/notes-{number}.txt", Body=b"x"
        )
    body = ratings_csv((7, 7, 5.0, 964982703))
    daemon.put("late.csv", body)

    result = small.tick()

    assert LandingCursor.parse(small.cursor).listing.dataset == "movies"  # not at ratings yet
    assert result.run_requests[0].tags == {
        **result.run_requests[0].tags,
        "movielens/datasets": "ratings",
        "movielens/new_files": "1",
    }


def test_a_duplicate_message_gives_no_second_run_and_no_second_load(daemon):
    body = ratings_csv((2, 1, 4.0, 964982703))
    landed = daemon.put("ratings-2.csv", body)
    daemon.tick_and_run()
    daemon.tick_and_run()  # deletes the first message

    boto3.client("sqs", endpoint_url=daemon.endpoint).send_message(
        QueueUrl=daemon.queue_url,
        MessageBody=s3_event(daemon.landing.bucket, landed["Key"], landed["ETag"].strip('"')),
    )
    duplicate, launched = daemon.tick_and_run()

    assert duplicate.run_requests == [] and launched == []
    assert daemon.messages_left() == 0  # nothing new: deleted at once
    assert len(daemon.launched) == 1
    assert daemon.rows() == data_rows(body)


def test_a_message_for_a_deleted_file_starts_nothing_and_is_deleted(daemon):
    daemon.put("gone.csv", ratings_csv((3, 1, 4.0, 964982703)))
    daemon.landing.get_client().delete_object(
        Bucket=daemon.landing.bucket, Key="landing/ratings/gone.csv"
    )

    result, launched = daemon.tick_and_run()

    assert result.run_requests == [] and launched == []
    assert daemon.messages_left() == 0
    assert daemon.rows() == 0


def test_a_message_arriving_after_the_listing_saw_the_file_starts_nothing(daemon):
    sqs = boto3.client("sqs", endpoint_url=daemon.endpoint)
    daemon.landing.get_client().put_bucket_notification_configuration(
        Bucket=daemon.landing.bucket, NotificationConfiguration={}
    )  # the notification is late: configured, say, after the file landed
    body = ratings_csv((4, 1, 4.0, 964982703), (4, 2, 1.0, 964982709))
    landed = daemon.put("ratings-4.csv", body)
    listed, launched = daemon.tick_and_run()

    sqs.send_message(
        QueueUrl=daemon.queue_url,
        MessageBody=s3_event(daemon.landing.bucket, landed["Key"], landed["ETag"].strip('"')),
    )
    late, relaunched = daemon.tick_and_run()

    assert len(launched) == 1 and listed.run_requests[0].tags["movielens/new_files"] == "1"
    assert late.run_requests == [] and relaunched == []
    assert daemon.messages_left() == 0
    assert daemon.rows() == data_rows(body)


def test_a_crash_before_the_run_is_recorded_redelivers_the_message_and_loads_once(daemon):
    no_listing = Daemon(
        {
            "MOVIELENS_S3_BUCKET": daemon.landing.bucket,
            "MOVIELENS_SQS_QUEUE_URL": daemon.queue_url,
            "MOVIELENS_SENSOR_LISTING_BUDGET": "1",  # the queue alone must bring the file back
        },
        daemon.instance,
        daemon.warehouse_path.parent,
        daemon.endpoint,
    )
    body = ratings_csv((5, 1, 4.0, 964982703))
    daemon.put("ratings-5.csv", body)

    crashed = no_listing.tick(keep=False)  # evaluated, then the daemon died: nothing recorded
    time.sleep(VISIBILITY_SECONDS + 1)  # the message comes back
    retried, launched = no_listing.tick_and_run()
    confirmed, relaunched = no_listing.tick_and_run()

    assert crashed.run_requests[0].run_key == retried.run_requests[0].run_key
    assert len(launched) == 1 and relaunched == [] and confirmed.run_requests == []
    assert no_listing.messages_left() == 0
    assert no_listing.rows() == data_rows(body)


def test_a_crash_after_the_run_but_before_the_cursor_gives_no_second_run(daemon):
    body = ratings_csv((6, 1, 4.0, 964982703))
    daemon.put("ratings-6.csv", body)

    first = daemon.tick(keep=False)  # its run is launched, its cursor lost
    launched = daemon.run(first)
    time.sleep(VISIBILITY_SECONDS + 1)
    again, relaunched = daemon.tick_and_run()  # the same run key: the daemon skips it
    confirmed, _ = daemon.tick_and_run()

    assert len(launched) == 1
    assert again.run_requests[0].run_key == first.run_requests[0].run_key and relaunched == []
    assert confirmed.run_requests == []
    assert daemon.messages_left() == 0
    assert daemon.rows() == data_rows(body)


def test_a_run_that_was_never_recorded_is_requested_again_not_lost(daemon):
    body = ratings_csv((8, 1, 4.0, 964982703))
    daemon.put("ratings-8.csv", body)

    lost = daemon.tick()  # its cursor is stored, but its run never starts
    again, launched = daemon.tick_and_run()  # the run is missing: the file is unseen again
    time.sleep(VISIBILITY_SECONDS + 1)  # the kept message comes back: recorded by now
    redelivered, relaunched = daemon.tick_and_run()

    assert again.run_requests[0].run_key == lost.run_requests[0].run_key
    assert len(launched) == 1 and relaunched == [] and redelivered.run_requests == []
    assert daemon.messages_left() == 0
    assert daemon.rows() == data_rows(body)


def test_files_landed_while_the_daemon_was_stopped_arrive_in_one_run_on_restart(daemon):
    daemon.tick_and_run()  # running, nothing landed
    bodies = {
        "stopped-a.csv": ratings_csv((9, 1, 4.0, 964982703)),
        "stopped-b.csv": ratings_csv((9, 2, 2.0, 964982703), (9, 3, 3.0, 964982704)),
    }
    for name, body in bodies.items():  # the daemon is stopped: no tick
        daemon.put(name, body)

    restarted, launched = daemon.tick_and_run()
    daemon.tick_and_run()

    assert len(launched) == 1
    assert restarted.run_requests[0].tags["movielens/new_files"] == "2"
    assert daemon.messages_left() == 0
    assert daemon.rows() == sum(data_rows(body) for body in bodies.values())
    assert [key for key, _ in daemon.ledger()] == [
        f"landing/ratings/{name}" for name in sorted(bodies)
    ]


def test_movielens_dev_sets_up_a_queue_only_on_the_loopback_server_and_says_when_it_cannot(
    endpoint,
):
    said: list[str] = []
    local = Settings.from_env({"MOVIELENS_S3_BUCKET": "dev-setup"})
    with_queue = Settings.from_env(
        {"MOVIELENS_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q"}
    )

    env = landing_queue_env(local, endpoint, progress=said.append)
    configured = boto3.client("s3", endpoint_url=endpoint).get_bucket_notification_configuration(
        Bucket="dev-setup"
    )["QueueConfigurations"]

    assert env == {
        "MOVIELENS_SQS_QUEUE_URL": f"{endpoint}/123456789012/movielens-landing",
        "MOVIELENS_SQS_WAIT_SECONDS": "20",  # the default 30 s interval, less 10 s
    }
    assert configured[0]["Events"] == ["s3:ObjectCreated:*"]
    assert configured[0]["Filter"]["Key"]["FilterRules"] == [
        {"Name": "prefix", "Value": "landing/"}
    ]
    assert landing_queue_env(with_queue, endpoint, progress=said.append) == {}
    assert landing_queue_env(local, None, progress=said.append) == {}  # AWS: nothing changes
    assert landing_queue_env(local, "http://127.0.0.1:21799", progress=said.append) == {}
    assert "finds new files by listing instead" in said[-1]


@pytest.mark.parametrize(
    ("environ", "wait"),
    [
        ({}, 20),
        ({"MOVIELENS_SENSOR_INTERVAL": "25"}, 15),
        ({"MOVIELENS_SENSOR_INTERVAL": "5"}, 0),
        ({"MOVIELENS_SENSOR_INTERVAL": "5", "MOVIELENS_SQS_WAIT_SECONDS": "3"}, 3),
    ],
)
def test_movielens_dev_waits_on_the_queue_up_to_ten_seconds_less_than_the_interval(environ, wait):
    assert dev_queue_wait_seconds(Settings.from_env(environ)) == wait


def test_a_receive_that_may_wait_returns_a_message_sent_while_it_waits(endpoint):
    client = boto3.client("sqs", endpoint_url=endpoint)
    queue_url = client.create_queue(QueueName="long-poll")["QueueUrl"]
    received: list[list[sqs.QueueMessage]] = []
    waiting = threading.Thread(
        target=lambda: received.append(sqs.receive(client, queue_url, wait_seconds=15))
    )

    waiting.start()
    waiting.join(timeout=1)
    still_waiting = waiting.is_alive()  # an empty queue: the receive waits instead of answering
    sent = client.send_message(QueueUrl=queue_url, MessageBody="{}")["MessageId"]
    waiting.join(timeout=30)

    assert still_waiting
    assert [message.message_id for message in received[0]] == [sent]
    assert sqs.receive(client, queue_url) == []  # without a wait: answers at once, empty
