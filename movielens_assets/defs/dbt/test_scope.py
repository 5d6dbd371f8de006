"""Which rows a run's scoped dbt tests read: the new ones on the S3 sensor's runs, all otherwise.

The primary-key tests of the RAW-fed models (``unique_combination_of_columns`` with
``changed_since``, in ``movielens_dbt``) count only the keys of rows loaded after a timestamp
that the dbt step hands to dbt in ``MOVIELENS_DBT_TESTS_SINCE`` (the macro ``tests_since``).
The S3 sensor marks its runs with ``TESTS_TAG``; on them that timestamp is the oldest load
watermark among the incremental models the run builds: rows loaded later are those no run has
tested. Full refreshes, a model built for the first time, the daily run and runs started by
hand test whole tables.
"""

from collections.abc import Mapping
from datetime import datetime

import dagster as dg

TESTS_TAG = "movielens/dbt_tests"
"""The run tag that asks for tests scoped to the new rows (value ``NEW_ROWS``)."""
NEW_ROWS = "new_rows"
TESTS_SINCE_ENV = "MOVIELENS_DBT_TESTS_SINCE"


def tests_since(
    run_tags: Mapping[str, str],
    full_refresh: bool,
    watermarks: Mapping[dg.AssetKey, datetime | None],
) -> str:
    """The value of ``TESTS_SINCE_ENV`` for a run: a timestamp, or '' for whole tables.

    ``watermarks``: the newest ``_loaded_at`` of each incremental model the run builds, before
    the run (None: the model does not exist yet).
    """
    if run_tags.get(TESTS_TAG) != NEW_ROWS or full_refresh or not watermarks:
        return ""
    if any(watermark is None for watermark in watermarks.values()):
        return ""
    oldest = min(watermark for watermark in watermarks.values() if watermark is not None)
    return oldest.isoformat(sep=" ")
