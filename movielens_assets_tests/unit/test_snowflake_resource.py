"""The Snowflake resource's sessions: the query tag and the connection (``resource.py``).

No emulator here: nothing connects; dagster-snowflake's resource is only built.
"""

import json

import pytest

from movielens_assets.warehouse.snowflake.resource import SnowflakeWarehouse, query_tag

pytestmark = pytest.mark.snowflake


def test_the_query_tag_is_json_with_the_run_and_asset():
    tag = query_tag("8c1d-run", "raw/raw_ratings")
    assert json.loads(tag) == {
        "app": "movielens",
        "tool": "dagster",
        "dagster_run_id": "8c1d-run",
        "asset": "raw/raw_ratings",
    }


def test_sessions_send_the_tag_and_endpoint_overrides_at_login():
    warehouse = SnowflakeWarehouse(
        account="acct",
        user="u",
        password="p",  # noqa: S106 - a placeholder, never sent anywhere
        host="localhost",
        port=8080,
        protocol="http",
    )
    resource = warehouse.snowflake_resource('{"app":"movielens"}')
    assert resource.additional_snowflake_connection_args == {
        "session_parameters": {"QUERY_TAG": '{"app":"movielens"}'},
        "host": "localhost",
        "port": 8080,
        "protocol": "http",
    }
    assert (resource.role, resource.database, resource.paramstyle) == (
        "LOADER",
        "MOVIELENS",
        "qmark",
    )
