"""``lib/redact.py``: secret parts of URIs, connection strings and errors, as pure functions."""

import logging

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from movielens_assets.lib.redact import (
    RedactedError,
    RedactedLog,
    redact,
    redact_json,
    redact_secrets,
    redacted_errors,
    secret_values,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:s3cr3t@127.0.0.1:9000/bucket", "http://alice:***@127.0.0.1:9000/bucket"),
        # an unencoded @ in the password: the host is after the last @
        ("postgresql://app:p@ss@db.internal:5432/x", "postgresql://app:***@db.internal:5432/x"),
        (
            "snowflake://loader:hunter22@acme-prod/MOVIELENS",
            "snowflake://loader:***@acme-prod/MOVIELENS",
        ),
        ("https://:only-a-password@host/", "https://:***@host/"),
        (
            'Could not connect to the endpoint URL: "http://u:pw@127.0.0.1:9/b?list-type=2"',
            'Could not connect to the endpoint URL: "http://u:***@127.0.0.1:9/b?list-type=2"',
        ),
    ],
)
def test_the_password_of_a_uri_is_masked_and_its_user_host_and_path_kept(text, expected):
    assert redact(text) == expected


def test_a_presigned_s3_url_keeps_its_address_but_not_its_signature_credential_or_token():
    url = (
        "https://movielens.s3.amazonaws.com/landing/ratings/r.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature=0123456789abcdef"
    )

    assert redact(url) == (
        "https://movielens.s3.amazonaws.com/landing/ratings/r.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=***&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600"
        "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=***&X-Amz-Signature=***"
    )


PARAMETER_CASES = {
    "https://api.example.com/v1?token=abc123&page=2": "https://api.example.com/v1?token=***&page=2",
    "https://h/x?Signature=abc&AWSAccessKeyId=AKIA1&Expires=1": (
        "https://h/x?Signature=***&AWSAccessKeyId=***&Expires=1"
    ),
    "host=db;user=loader;Password=hunter2;database=raw": (
        "host=db;user=loader;Password=***;database=raw"
    ),
    'account=acme password="two words"': 'account=acme password="***"',
    "{'user': 'loader', 'password': 'hunter2'}": "{'user': 'loader', 'password': '***'}",
    '{"private_key_passphrase": "abc"}': '{"private_key_passphrase": "***"}',
}


@pytest.mark.parametrize(("text", "expected"), PARAMETER_CASES.items())
def test_secret_parameters_are_masked_in_query_strings_connection_strings_and_dicts(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "s3://movielens/landing/ratings/ratings-2024.csv",
        "http://127.0.0.1:9000/bucket/key@2024.csv",  # an @ in the path is no userinfo
        "https://alice@github.com/org/repo.git",  # a user without a password
        "landing/ratings/token-report.csv loaded 12 rows; mytoken=3, design=4",
        "rating is 7.0, but must be a star rating from 0.5 to 5.0 in steps of 0.5",
        "",
    ],
)
def test_text_without_secrets_is_left_exactly_as_it_was(text):
    assert redact(text) == text


def test_redacting_twice_changes_nothing_more():
    text = "http://u:pw@h/x?X-Amz-Signature=abc password=hunter2 {'token': 'zzz'}"

    assert redact(redact(text)) == redact(text)
    assert "pw@" not in redact(text) and "abc" not in redact(text) and "zzz" not in redact(text)


def test_known_secret_values_are_masked_wherever_they_occur():
    environ = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "SNOWFLAKE_PASSWORD": "correct-horse",
        "AWS_SESSION_TOKEN": "short",  # too short to mask without hiding ordinary words
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",  # an identifier, not a secret
    }

    text = "signed with wJalrXUtnFEMI/K7MDENG as AKIAIOSFODNN7EXAMPLE; login correct-horse short"

    assert secret_values(environ) == ["wJalrXUtnFEMI/K7MDENG", "correct-horse"]
    assert (
        redact_secrets(text, environ) == "signed with *** as AKIAIOSFODNN7EXAMPLE; login *** short"
    )


def test_json_metadata_is_redacted_at_every_depth_and_keeps_its_shape():
    value = [{"file": "a.csv", "first_error": "see https://h/x?sig=abc", "rows": 3, "ok": None}]

    assert redact_json(value) == [
        {"file": "a.csv", "first_error": "see https://h/x?sig=***", "rows": 3, "ok": None}
    ]


def test_an_error_naming_a_password_is_replaced_by_a_redacted_one_without_its_chain():
    with pytest.raises(RedactedError) as caught, redacted_errors():
        try:
            raise OSError("connection refused")
        except OSError as cause:
            raise ValueError("could not reach http://alice:hunter22@127.0.0.1:9/") from cause

    assert str(caught.value) == (
        "ValueError: could not reach http://alice:***@127.0.0.1:9/\n"
        "  caused by OSError: connection refused"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_secret_in_the_cause_alone_also_replaces_the_error():
    with pytest.raises(RedactedError) as caught, redacted_errors():
        try:
            raise OSError("GET https://h/x?X-Amz-Signature=deadbeef failed")
        except OSError as cause:
            raise RuntimeError("the download failed") from cause

    assert str(caught.value) == (
        "RuntimeError: the download failed\n"
        "  caused by OSError: GET https://h/x?X-Amz-Signature=*** failed"
    )


def test_an_error_without_a_secret_is_re_raised_unchanged():
    original = KeyError("ratings")

    with pytest.raises(KeyError) as caught, redacted_errors():
        raise original

    assert caught.value is original


def test_botocore_names_the_endpoint_with_its_password_and_the_redacted_error_does_not(
    monkeypatch,
):
    """A real boto3 client against a closed loopback port: what botocore raises, redacted."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://loader:s3-endpoint-pw@127.0.0.1:9")
    client = boto3.client("s3", config=Config(retries={"max_attempts": 1}))

    with pytest.raises(EndpointConnectionError) as unredacted:
        client.list_objects_v2(Bucket="movielens")
    with pytest.raises(RedactedError) as redacted, redacted_errors():
        client.list_objects_v2(Bucket="movielens")

    assert "s3-endpoint-pw" in str(unredacted.value)  # the leak this module exists for
    assert "s3-endpoint-pw" not in str(redacted.value)
    assert "http://loader:***@127.0.0.1:9/movielens" in str(redacted.value)


def test_a_redacted_log_masks_each_message_before_the_logger_sees_it(caplog):
    log = RedactedLog(logging.getLogger("movielens.test_redact"))

    with caplog.at_level(logging.DEBUG, logger="movielens.test_redact"):
        log.debug("GET http://u:pw-debug@h/")
        log.info("copy from https://h/x?X-Amz-Signature=sig-info")
        log.warning("login failed: password=pw-warning")
        log.error("connect snowflake://u:pw-error@acme")

    assert [record.levelname for record in caplog.records] == ["DEBUG", "INFO", "WARNING", "ERROR"]
    assert [record.getMessage() for record in caplog.records] == [
        "GET http://u:***@h/",
        "copy from https://h/x?X-Amz-Signature=***",
        "login failed: password=***",
        "connect snowflake://u:***@acme",
    ]
