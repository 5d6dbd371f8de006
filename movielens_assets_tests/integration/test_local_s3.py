"""The loopback S3 keeps what landed across restarts, and costs nothing between writes.

Real components: the loopback server process (moto's API, ``local_s3_server``) started by
``LocalS3Server`` on a state folder of the test's own, talked to with boto3. Expectations come
from the test's own bytes (ETags as MD5s, multipart ETags as the MD5 of the parts' MD5s), not
from the server. These tests also guard the moto internals ``local_s3_server`` relies on: a moto
upgrade that changes them fails here.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, unquote_plus

import boto3
import pytest
from botocore.config import Config

from movielens_assets.settings import Settings
from movielens_assets.tools.local_s3 import (
    LocalS3BusyError,
    LocalS3Server,
    LocalS3StateError,
    s3_endpoint,
)

BUCKET = "loopback-test"
OBJECTS = 20_000
PART = 8 * 1024 * 1024
"""boto3's default multipart chunk size (``upload_file`` without a config)."""


def client(url: str):
    return boto3.client(
        "s3", endpoint_url=url, config=Config(max_pool_connections=32, retries={"mode": "standard"})
    )


def body(number: int) -> bytes:
    """A small ratings file, different for every number."""
    row = f"{number},{number % 97},4.0,{964982703 + number}"
    return f"userId,movieId,rating,timestamp\n{row}\n".encode()


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def multipart_etag(data: bytes, part: int) -> str:
    """S3's ETag of a multipart upload: MD5 of the parts' binary MD5s, dash, part count."""
    digests = [
        hashlib.md5(data[at : at + part], usedforsecurity=False).digest()
        for at in range(0, len(data), part)
    ]
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def listing(url: str, bucket: str = BUCKET) -> tuple[dict[str, tuple[str, int]], int]:
    """Every object (key -> (ETag, size)) through every ListObjectsV2 page, and the pages."""
    pages = list(client(url).get_paginator("list_objects_v2").paginate(Bucket=bucket))
    objects = {
        item["Key"]: (item["ETag"].strip('"'), item["Size"])
        for page in pages
        for item in page.get("Contents", [])
    }
    return objects, len(pages)


@pytest.fixture
def server(tmp_path: Path):
    started = LocalS3Server(tmp_path / "s3")
    yield started
    started.stop()


def test_a_restart_keeps_twenty_thousand_objects_their_etags_and_a_multipart_upload(
    server: LocalS3Server, tmp_path: Path
):
    url = server.start()
    s3 = client(url)
    s3.create_bucket(Bucket=BUCKET)
    keys = {f"landing/ratings/part-{number:05d}.csv": body(number) for number in range(OBJECTS)}
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(
            pool.map(
                lambda item: s3.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), keys.items()
            )
        )
    big = tmp_path / "big.csv"
    big_bytes = os.urandom(PART * 2 + 12345)
    big.write_bytes(big_bytes)
    s3.upload_file(str(big), BUCKET, "landing/ratings/big.csv")  # boto3's default: 8 MiB parts
    expected = {key: (md5(data), len(data)) for key, data in keys.items()}
    expected["landing/ratings/big.csv"] = (multipart_etag(big_bytes, PART), len(big_bytes))

    before, pages = listing(url)
    assert before == expected
    assert pages == 21  # 20,001 keys in pages of 1,000

    server.stop()
    url = server.start()
    after, pages = listing(url)
    assert after == expected
    assert pages == 21
    s3 = client(url)
    for key in ("landing/ratings/part-00000.csv", "landing/ratings/part-19999.csv"):
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == keys[key]
    assert s3.get_object(Bucket=BUCKET, Key="landing/ratings/big.csv")["Body"].read() == big_bytes


def test_overwrites_deletes_copies_metadata_and_empty_buckets_survive_a_restart(
    server: LocalS3Server,
):
    url = server.start()
    s3 = client(url)
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="loopback-empty")
    s3.put_object(Bucket=BUCKET, Key="a.csv", Body=b"first")
    s3.put_object(
        Bucket=BUCKET, Key="a.csv", Body=b"second", ContentType="text/csv", Metadata={"origin": "x"}
    )
    s3.put_object(Bucket=BUCKET, Key="gone.csv", Body=b"soon deleted")
    s3.delete_object(Bucket=BUCKET, Key="gone.csv")
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "never-there.csv"}]})
    s3.copy_object(Bucket=BUCKET, Key="b.csv", CopySource={"Bucket": BUCKET, "Key": "a.csv"})
    modified = s3.head_object(Bucket=BUCKET, Key="a.csv")["LastModified"]

    server.stop()
    url = server.start()
    s3 = client(url)
    assert listing(url)[0] == {"a.csv": (md5(b"second"), 6), "b.csv": (md5(b"second"), 6)}
    head = s3.head_object(Bucket=BUCKET, Key="a.csv")
    assert (head["ContentType"], head["Metadata"], head["LastModified"]) == (
        "text/csv",
        {"origin": "x"},
        modified,
    )
    assert s3.get_object(Bucket=BUCKET, Key="b.csv")["Body"].read() == b"second"
    assert {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]} == {BUCKET, "loopback-empty"}
    data_files = [path for path in (server.state_dir / "data").rglob("*") if path.is_file()]
    assert len(data_files) == 2  # the first a.csv and gone.csv left no bytes behind


def test_every_acknowledged_write_survives_a_sigkill_of_the_server(server: LocalS3Server):
    url = server.start()
    s3 = client(url)
    s3.create_bucket(Bucket=BUCKET)
    keys = {f"k/{number:03d}.csv": body(number) for number in range(300)}
    for key, data in keys.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    os.kill(server.pid, signal.SIGKILL)
    server.stop()  # reaps it

    url = server.start()
    assert listing(url)[0] == {key: (md5(data), len(data)) for key, data in keys.items()}


def test_s3_event_notifications_reach_an_sqs_queue_on_the_same_server(server: LocalS3Server):
    url = server.start()
    s3 = client(url)
    sqs = boto3.client("sqs", endpoint_url=url)
    queue_url = sqs.create_queue(QueueName="landing-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "landing/"}]}},
                }
            ]
        },
    )
    s3.put_object(Bucket=BUCKET, Key="landing/ratings/one file.csv", Body=body(1))
    s3.put_object(Bucket=BUCKET, Key="elsewhere/x.csv", Body=body(2))

    records = []
    for _ in range(5):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        for message in messages:
            records += json.loads(message["Body"]).get("Records", [])
        if records:
            break
    assert [
        (unquote_plus(r["s3"]["object"]["key"]), r["s3"]["object"]["eTag"]) for r in records
    ] == [
        ("landing/ratings/one file.csv", md5(body(1)))
    ]  # keys come URL-encoded, as AWS sends them


def write_first_format(state_dir: Path, objects: dict[tuple[str, str], tuple[bytes, str]]) -> None:
    """A state folder as the first mirror wrote it: ``index.json`` + ``objects/``."""
    (state_dir / "objects").mkdir(parents=True)
    index = {}
    for (bucket, key), (data, etag) in objects.items():
        ident = f"{bucket}/{key}"
        file_name = quote(ident, safe="")
        (state_dir / "objects" / file_name).write_bytes(data)
        index[ident] = {
            "bucket": bucket,
            "key": key,
            "etag": etag,
            "file": file_name,
            "md5": md5(data),
        }
    (state_dir / "index.json").write_text(json.dumps(index, indent=1))


def test_a_folder_of_the_first_format_is_imported_with_its_recorded_etags(server: LocalS3Server):
    recorded = "0123456789abcdef0123456789abcdef-3"  # a multipart ETag, not the bytes' MD5
    write_first_format(
        server.state_dir,
        {
            (BUCKET, "landing/movies/movies.csv"): (b"movieId,title\n1,Toy Story\n", recorded),
            (BUCKET, "landing/tags/a b.csv"): (b"tags\n", md5(b"tags\n")),
        },
    )
    url = server.start()
    assert listing(url)[0] == {
        "landing/movies/movies.csv": (recorded, 26),
        "landing/tags/a b.csv": (md5(b"tags\n"), 5),
    }
    head = client(url).head_object(Bucket=BUCKET, Key="landing/movies/movies.csv")
    assert head["Metadata"] == {"content-md5-hex": md5(b"movieId,title\n1,Toy Story\n")}
    assert not (server.state_dir / "index.json").exists()
    assert not (server.state_dir / "objects").exists()

    server.stop()
    url = server.start()
    assert listing(url)[0]["landing/movies/movies.csv"] == (recorded, 26)


def test_an_unreadable_first_format_index_is_an_error_naming_the_folder(server: LocalS3Server):
    server.state_dir.mkdir()
    (server.state_dir / "index.json").write_text('{"loopback-test/a.csv": {"bucket": ')
    with pytest.raises(LocalS3StateError) as error:
        server.start()
    message = str(error.value)
    assert str(server.state_dir / "index.json") in message
    assert "move" in message and "land the files again" in message
    assert (server.state_dir / "index.json").exists()  # nothing removed


def test_a_folder_of_an_unknown_format_is_an_error_naming_it(server: LocalS3Server):
    server.state_dir.mkdir()
    (server.state_dir / "FORMAT").write_text("movielens-local-s3 9\n")
    with pytest.raises(LocalS3StateError, match="movielens-local-s3 9") as error:
        server.start()
    assert str(server.state_dir) in str(error.value)


def test_a_second_server_on_the_same_folder_is_refused_and_s3_endpoint_reuses_the_first(
    server: LocalS3Server, tmp_path: Path
):
    url = server.start()
    with pytest.raises(LocalS3BusyError):
        LocalS3Server(server.state_dir).start()
    settings = Settings.from_env({"MOVIELENS_HOME": str(tmp_path)})
    assert settings.local_s3_dir == server.state_dir
    with s3_endpoint(settings) as reused:
        assert reused == url


def process_running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


PARENT = """
import sys
from pathlib import Path
from movielens_assets.tools.local_s3 import LocalS3Server
server = LocalS3Server(Path(sys.argv[1]))
server.start()
print(server.pid, flush=True)
sys.stdin.read()
"""


def test_the_server_process_does_not_outlive_a_sigkilled_parent(tmp_path: Path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "s3")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60
    while process_running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_running(child)
    assert not (tmp_path / "s3" / "endpoint.json").exists()  # it shut down cleanly


def resident_mib(pid: int) -> float:
    """The process's resident set (``VmRSS``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_stored_bytes_live_on_disk_not_in_the_server_s_memory(server: LocalS3Server, tmp_path):
    url = server.start()
    s3 = client(url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="warm-up.csv", Body=b"x")
    before = resident_mib(server.pid)
    blob = os.urandom(32 * 1024 * 1024)
    for number in range(4):
        s3.put_object(Bucket=BUCKET, Key=f"blob-{number}", Body=blob)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(PART * 3))
    s3.upload_file(str(upload), BUCKET, "multipart.bin")
    stored = 4 * len(blob) + PART * 3
    data_files = [path for path in (server.state_dir / "data").rglob("*") if path.is_file()]

    assert sum(path.stat().st_size for path in data_files) == stored + 1
    grown = resident_mib(server.pid) - before
    assert grown < stored / 2**20 / 3, f"RSS grew {grown:.0f} MiB storing {stored / 2**20:.0f} MiB"
    assert s3.get_object(Bucket=BUCKET, Key="multipart.bin")["Body"].read() == upload.read_bytes()
