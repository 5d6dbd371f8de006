"""Progress of one big file's load in the Dagster run's log (DuckDB's ``query_progress()``)."""

import re
from itertools import pairwise

import dagster as dg
import duckdb
import pytest

from movielens_assets.defs.raw.assets import build_raw_assets
from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.asset_keys import raw_key
from movielens_assets.lib.progress import ProgressThrottle
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import Settings
from movielens_assets.warehouse.duckdb import DuckDBWarehouse

BIG_RATINGS = 6_000_000
"""About 150 MB: a second or more of loading on these machines."""
PROGRESS = re.compile(r"ratings: (\S+): (\d+)% \(of ([\d,]+) bytes\) after ([\d.]+) s$")


def test_a_line_is_due_at_most_once_per_interval_and_once_per_step():
    throttle = ProgressThrottle(interval=5.0, step=10.0)
    readings = [(-1, 1.0), (3, 2.0), (12, 4.9), (14, 5.0), (19, 10.5), (21, 10.6), (95, 30.0)]

    due = [(percent, elapsed) for percent, elapsed in readings if throttle.due(percent, elapsed)]

    # -1: DuckDB cannot tell yet; 12% is too early; 19% is in the step already reported
    assert due == [(14, 5.0), (21, 10.6), (95, 30.0)]


@pytest.fixture
def big_ratings_file(tmp_path):
    """A valid ratings.csv of BIG_RATINGS rows, with its number of lines counted apart."""
    path = tmp_path / "ratings.csv"
    duckdb.sql(
        f"""copy (
            select
                range % 100000 + 1 as userId,
                range % 27000 + 1 as movieId,
                (range % 10 + 1) * 0.5 as rating,
                964982703 + range as timestamp
            from range({BIG_RATINGS})
        ) to '{path}' (header, delimiter ',')"""
    )
    return path


def test_a_big_files_load_logs_rising_percentages_in_the_runs_log(
    landing: LandingBucket, big_ratings_file, tmp_path
):
    client = landing.get_client()
    key = landing.dataset_prefix("ratings") + "ratings.csv"
    s3lib.upload(client, big_ratings_file, landing.bucket, key)
    size = client.head_object(Bucket=landing.bucket, Key=key)["ContentLength"]
    warehouse = DuckDBWarehouse(
        path=str(tmp_path / "warehouse.duckdb"), progress_interval=0.2, progress_step=5
    )

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [build_raw_assets(Settings.from_env({}))],
            selection=[raw_key("ratings")],
            resources={"s3": landing, "warehouse": warehouse},
            instance=instance,
        )
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]

    assert result.success
    lines = [match for message in messages if (match := PROGRESS.search(message))]
    assert len(lines) >= 2, messages
    assert {line.group(1) for line in lines} == {key}
    assert {int(line.group(3).replace(",", "")) for line in lines} == {size}
    percents = [int(line.group(2)) for line in lines]
    assert percents == sorted(set(percents)) and 0 < percents[0] and percents[-1] <= 100
    seconds = [float(line.group(4)) for line in lines]
    # at least progress_interval apart (the log shows tenths of a second)
    assert all(later - earlier >= 0.2 - 0.1 for earlier, later in pairwise(seconds))
    rows = result.asset_materializations_for_node("raw_tables")[0].metadata["rows_loaded"]
    assert rows.value == BIG_RATINGS
