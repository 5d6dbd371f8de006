"""A ``dagster-daemon`` SIGKILLed in the middle of the landing sensor's tick, then restarted.

The production topology of ``test_production_topology.py``, nothing mocked: a throwaway
PostgreSQL holds the instance (``deploy/dagster.yaml``), ``dagster code-server start`` serves the
code location (the sensor is evaluated there), ``dagster-webserver`` answers GraphQL and
``dagster-daemon`` ticks the sensor, with a standalone moto server (S3, and SQS for the
notification path) named by ``AWS_ENDPOINT_URL_S3``.

Each tick does real work: thousands of small non-data objects sit under the landing prefix and
are listed. The daemon is killed once the instance (its ``job_ticks`` table in Postgres, polled
every 20 ms) shows the sensor's tick STARTED for files landed just before and the evaluation in
the code server is under way: listing the fillers (the S3 server's access log) or, with a queue,
holding the new files' messages (received, in flight). So the kill falls inside the tick's
evaluation (checked: GraphQL still shows the tick STARTED after the daemon is gone). The
code server may finish that evaluation; nobody records its result. More files land while the
daemon is down; a new daemon on the same instance then catches up. Every landed file must be
requested by exactly one run (the runs' run keys are recomputed from the files' keys and ETags
with ``run_key_for``) and loaded into RAW exactly once (row counts from the CSV files with
Python's csv module).

Two paths: ``listing`` (no queue; the budget covers the bucket, so every tick lists it all) and
``notifications`` (S3 notifications to an SQS queue on the moto server, set up as ``movielens
dev`` does, with a 20 s visibility timeout; the budget covers half the bucket, so the listing
is a pass over several ticks and the files landed around the kill, named to sort before the
tail of the first batch, are found by their notifications or, later, by the pass). There the
killed tick's messages are in flight; they come back, are deleted as already handled or
bring their files once, and the queue drains without a second run.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest

from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.cursor import run_key_for
from movielens_assets.lib.s3 import S3Object
from movielens_assets.settings import Settings
from movielens_assets.tools.notifications import setup_landing_queue
from movielens_assets_tests.conftest import SAMPLE, csv_rows
from movielens_assets_tests.e2e.deployment import NOT_FINISHED, graphql, runs, wait_for
from movielens_assets_tests.e2e.production import Production, production

pytestmark = pytest.mark.e2e

FILLERS = 6_000
"""Non-data objects under the landing prefix: listing them makes each tick take seconds."""
BUCKET = "movielens"
VISIBILITY_SECONDS = 20
"""The queue's visibility timeout (``movielens dev`` sets 120 s): a message the killed tick
received comes back within the test."""
TIMEOUT = 420
TICKS_QUERY = """
{
  sensorOrError(sensorSelector: {
    repositoryLocationName: "movielens", repositoryName: "__repository__",
    sensorName: "s3_landing_sensor"
  }) {
    ... on Sensor {
      sensorState { ticks(limit: 20) { tickId status timestamp endTimestamp runKeys skipReason } }
    }
  }
}
"""


def ratings_csv(first_user: int, rows: int) -> bytes:
    """A small ratings file of new users rating the sample's first movies."""
    lines = ["userId,movieId,rating,timestamp"] + [
        f"{first_user + n // 3},{1 + n % 3},{(n % 10 + 1) / 2},{1_600_000_000 + n}"
        for n in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def data_rows(body: bytes) -> int:
    """Rows of a CSV body, counted with Python's csv module (the independent oracle)."""
    return len(list(csv.reader(io.StringIO(body.decode())))) - 1


@dataclass
class Topology:
    """The processes of the production topology; the daemon can be killed and started again."""

    up: Production
    s3: Any
    daemon: subprocess.Popen | None = None
    landed: dict[str, tuple[S3Object, bytes]] = field(default_factory=dict)
    daemons: int = 0

    @property
    def root(self) -> Path:
        return self.up.root

    @property
    def env(self) -> dict[str, str]:
        return self.up.env

    @property
    def port(self) -> int:
        return self.up.web_port

    def start_daemon(self) -> None:
        self.daemons += 1
        self.daemon = self.up.start_daemon(f"daemon-{self.daemons}")

    def kill_daemon(self) -> None:
        assert self.daemon is not None
        os.killpg(self.daemon.pid, signal.SIGKILL)
        self.daemon.wait(timeout=30)

    def put(self, key: str, body: bytes) -> None:
        """Land one data file and remember it with its ETag (what the sensor keys runs by)."""
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        head = self.s3.head_object(Bucket=BUCKET, Key=key)
        obj = S3Object(key=key, etag=head["ETag"].strip('"'), size=head["ContentLength"])
        self.landed[key] = (obj, body)

    def ticks(self) -> list[dict]:
        """The sensor's latest ticks, newest first (none while the code location loads)."""
        sensor = graphql(self.port, TICKS_QUERY)["sensorOrError"]
        return sensor["sensorState"]["ticks"] if "sensorState" in sensor else []

    def started_tick(self) -> dict | None:
        """The newest sensor tick if it is STARTED, read from the instance's Postgres tables
        (milliseconds, where GraphQL takes a tenth of a second or more under load)."""
        with self.up.postgres.connect() as connection, connection.cursor() as cursor:
            cursor.execute(
                "select id, status, extract(epoch from timestamp) from job_ticks "
                "where type = 'SENSOR' order by id desc limit 1"
            )
            row = cursor.fetchone()
        if row is None or row[1] != "STARTED":
            return None
        return {"tickId": str(row[0]), "status": row[1], "timestamp": float(row[2])}

    def s3_log_size(self) -> int:
        return (self.root / "s3.log").stat().st_size

    def evaluating(self, log_offset: int) -> dict | None:
        """The sensor's tick if it is STARTED and its evaluation (in the code server) is under
        way: with a queue, the second batch's two messages are received (in flight); without,
        the evaluation lists the fillers (the S3 server's access log, from ``log_offset``, shows
        a sensor listing request, which names ``max-keys``; the RAW loads' paginator does not)."""
        if "MOVIELENS_SQS_QUEUE_URL" in self.env:
            under_way = self.messages_in_flight() >= 2
        else:
            with (self.root / "s3.log").open("rb") as log:
                log.seek(log_offset)
                under_way = any(
                    b"list-type=2" in line
                    and b"prefix=landing/links/" in line
                    and b"max-keys=" in line
                    for line in log
                )
        return self.started_tick() if under_way else None

    def sensor_runs(self) -> list[dict]:
        return [run for run in runs(self.port) if "dagster/sensor_name" in run["tags"]]

    def caught_up(self, since: float) -> list[dict] | None:
        """Every run finished and a tick after ``since`` that found nothing new: the runs."""
        ticks = self.ticks()
        current = runs(self.port)
        quiet = ticks and ticks[0]["status"] == "SKIPPED" and ticks[0]["timestamp"] > since
        finished = current and not {run["status"] for run in current} & NOT_FINISHED
        return current if quiet and finished else None

    def queue_attributes(self) -> dict[str, int]:
        sqs = boto3.client("sqs", endpoint_url=self.env["AWS_ENDPOINT_URL_S3"])
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.env["MOVIELENS_SQS_QUEUE_URL"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return {name: int(value) for name, value in attributes.items()}

    def messages_left(self) -> int:
        """Messages on the queue, visible or in flight (received, not deleted)."""
        return sum(self.queue_attributes().values())

    def messages_in_flight(self) -> int:
        """Messages received and not deleted (invisible until their visibility timeout)."""
        return self.queue_attributes()["ApproximateNumberOfMessagesNotVisible"]

    def warehouse(self, query: str) -> list[tuple]:
        path = Path(self.env["MOVIELENS_HOME"]) / "warehouse.duckdb"
        with duckdb.connect(str(path), read_only=True) as connection:
            return connection.execute(query).fetchall()


@pytest.fixture(params=["listing", "notifications"])
def topology(request, tmp_path_factory) -> Iterator[Topology]:
    """The topology with the fillers and a first batch landed before the daemon starts;
    ``notifications``: with S3 notifications through an SQS queue on the moto server too."""
    budget = FILLERS + 1_000 if request.param == "listing" else FILLERS // 2
    with production(
        tmp_path_factory.mktemp(f"daemon-kill-{request.param}"),
        MOVIELENS_SENSOR_INTERVAL="10",
        MOVIELENS_SENSOR_LISTING_BUDGET=str(budget),
    ) as up:
        s3 = boto3.client("s3", endpoint_url=up.s3_endpoint)
        topology = Topology(up, s3)
        s3lib.ensure_bucket(s3, BUCKET)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(
                pool.map(
                    lambda n: s3.put_object(
                        Bucket=BUCKET, Key=f"landing/links/notes/note-{n:05}.txt", Body=b"x"
                    ),
                    range(FILLERS),
                )
            )
        if request.param == "notifications":  # after the fillers: no message for them
            settings = Settings.from_env({"MOVIELENS_SENSOR_INTERVAL": "10"})
            queue = setup_landing_queue(settings, up.s3_endpoint)
            boto3.client("sqs", endpoint_url=up.s3_endpoint).set_queue_attributes(
                QueueUrl=queue, Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)}
            )
            up.env["MOVIELENS_SQS_QUEUE_URL"] = queue
        topology.put("landing/movies/movies.csv", (SAMPLE / "movies.csv").read_bytes())
        topology.put("landing/ratings/ratings-a1.csv", ratings_csv(700, 30))
        topology.put("landing/ratings/ratings-a2.csv", ratings_csv(710, 12))
        up.start_servers()
        topology.start_daemon()
        up.wait_for_webserver()
        yield topology


def test_a_daemon_killed_mid_tick_neither_skips_nor_double_requests_a_file(topology: Topology):
    first_batch = set(topology.landed)

    def just_after_a_quiet_tick() -> bool:
        """The first batch's run is requested and a tick that found nothing ended < 2 s ago:
        the gap before the next tick (10 s after the last one began) is ahead."""
        ticks = topology.ticks()
        return bool(
            topology.sensor_runs()
            and ticks
            and ticks[0]["status"] == "SKIPPED"
            and ticks[0]["endTimestamp"]
            and time.time() - ticks[0]["endTimestamp"] < 2
        )

    wait_for("the first run and a quiet tick after it", just_after_a_quiet_tick, TIMEOUT, 0.2)
    landed_at = time.time()
    topology.put("landing/ratings/ratings-0b1.csv", ratings_csv(720, 21))
    topology.put("landing/ratings/ratings-0b2.csv", ratings_csv(730, 9))
    second_batch = set(topology.landed) - first_batch
    log_offset = topology.s3_log_size()

    tick = wait_for(
        "the tick after the second batch to be evaluated",
        lambda: topology.evaluating(log_offset),
        TIMEOUT,
        every=0.02,
    )
    topology.kill_daemon()
    assert tick["timestamp"] > landed_at - 1
    killed = next(t for t in topology.ticks() if t["tickId"] == tick["tickId"])
    assert killed["status"] == "STARTED", f"the kill missed the tick: {killed}"
    interrupted_with_runs = killed["runKeys"]  # reserved before the kill, or nothing

    topology.put("landing/ratings/ratings-0c1.csv", ratings_csv(740, 15))  # landed while down
    third_batch = set(topology.landed) - first_batch - second_batch
    restarted_at = time.time()
    topology.start_daemon()
    if "MOVIELENS_SQS_QUEUE_URL" in topology.env:
        # The killed tick's messages come back after the visibility timeout: they bring their
        # files (not found otherwise yet) or are deleted as already handled. Each is deleted
        # once its run is recorded, so an empty queue means every notification was acted on.
        wait_for("the queue to drain", lambda: topology.messages_left() == 0, TIMEOUT, every=1)
        restarted_at = time.time()
    everything = wait_for(
        "the restarted daemon to catch up", lambda: topology.caught_up(restarted_at), TIMEOUT
    )

    def key_of(batch: set[str]) -> str:
        return run_key_for(topology.landed[key][0] for key in batch)

    sensor_runs = [run for run in everything if "dagster/sensor_name" in run["tags"]]
    run_keys = Counter(run["tags"]["dagster/run_key"] for run in sensor_runs)
    apart = {key_of(first_batch), key_of(second_batch), key_of(third_batch)}
    together = {key_of(first_batch), key_of(second_batch | third_batch)}
    # Each batch is in exactly one run: the second and third together (the new daemon's first
    # tick found both), or apart (the interrupted tick was resumed with its reserved run, or
    # the second batch came back with its redelivered messages or the listing pass).
    assert set(run_keys) in (together, apart), (run_keys, interrupted_with_runs)
    assert max(run_keys.values()) == 1
    assert sum(int(run["tags"]["movielens/new_files"]) for run in sensor_runs) == len(
        topology.landed
    )
    assert {run["status"] for run in everything} == {"SUCCESS"}
    after = next(t for t in topology.ticks() if t["tickId"] == tick["tickId"])
    assert after["status"] != "STARTED"  # the new daemon settled the interrupted tick

    ledger = topology.warehouse("select s3_key, rows_loaded from raw.load_ledger")
    assert Counter(key for key, _ in ledger) == Counter(list(topology.landed))
    assert dict(ledger) == {key: data_rows(body) for key, (_, body) in topology.landed.items()}
    ratings = {key: body for key, (_, body) in topology.landed.items() if "ratings" in key}
    assert dict(
        topology.warehouse("select _source_file, count(*) from raw.raw_ratings group by 1")
    ) == {key: data_rows(body) for key, body in ratings.items()}
    assert topology.warehouse("select count(*) from raw.raw_movies") == [
        (len(csv_rows(SAMPLE / "movies.csv")),)
    ]
    assert topology.warehouse("select count(*) from dev.fct_ratings") == [
        (sum(data_rows(body) for body in ratings.values()),)
    ]
    print(
        f"\n[daemon kill] tick {tick['tickId']} killed while STARTED "
        f"({'runs reserved' if interrupted_with_runs else 'evaluation lost'}); "
        f"batches {'together' if set(run_keys) == together else 'apart'}; "
        f"runs: {dict(run_keys)}"
    )
