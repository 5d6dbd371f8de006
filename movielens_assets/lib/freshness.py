"""Freshness windows, declared once in the dbt project, and Dagster's policies made from them.

Every window is written in dbt's own form, ``{count: 24, period: hour}``:

- RAW: the ``raw`` source's ``freshness`` in ``movielens_dbt/models/staging/_sources.yml``, which
  ``dbt source freshness`` applies too;
- models: ``meta.freshness`` (same shape, set per folder in ``dbt_project.yml``: the marts).

From the manifest follow both the Dagster ``FreshnessPolicy`` of each asset and the
``dbt_source_freshness`` checks on the RAW assets, so the two can never disagree.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dagster as dg

PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def window(criterion: Mapping[str, Any] | None) -> timedelta | None:
    """dbt's ``{count: 24, period: hour}`` as a timedelta; None when not set."""
    if not criterion or criterion.get("count") is None:
        return None
    return criterion["count"] * PERIODS[criterion["period"]]


def freshness_policy(freshness: Mapping[str, Any] | None) -> dg.FreshnessPolicy | None:
    """Dagster's time-window policy for dbt's ``warn_after`` / ``error_after``; None if unset."""
    fail = window((freshness or {}).get("error_after"))
    if fail is None:
        return None
    warn = window((freshness or {}).get("warn_after"))
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


def source_freshness_config(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each source table's schema, identifier, ``loaded_at_field`` and freshness windows."""
    return {
        source["name"]: {
            "schema": source["schema"],
            "identifier": source["identifier"],
            "loaded_at_field": source["loaded_at_field"],
            "freshness": source.get("freshness") or {},
        }
        for source in manifest["sources"].values()
    }
