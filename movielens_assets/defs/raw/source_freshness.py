"""dbt source freshness as asset checks on the ``raw/*`` assets.

dagster-dbt does not map ``dbt source freshness``. These checks apply the same rules to the same
configuration: each source's ``loaded_at_field`` and warn/error windows as dbt parsed them from
``_sources.yml`` into the manifest, evaluated with one query for all selected tables instead of
a second dbt process (which would cost more than the queries themselves). Each result is a
non-blocking check on the RAW asset the source maps onto.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.asset_keys import raw_key
from movielens_assets.lib.freshness import source_freshness_config, window
from movielens_assets.project import movielens_project
from movielens_assets.warehouse.base import Warehouse

CHECK_NAME = "dbt_source_freshness"


def freshness_status(age: timedelta, freshness: Mapping[str, Any]) -> str:
    """``pass``, ``warn`` or ``error``, by the same rule as ``dbt source freshness``."""
    error_after = window(freshness.get("error_after"))
    warn_after = window(freshness.get("warn_after"))
    if error_after is not None and age > error_after:
        return "error"
    if warn_after is not None and age > warn_after:
        return "warn"
    return "pass"


def check_result(
    dataset: str,
    config: Mapping[str, Any] | None,
    max_loaded_at: datetime | None,
    now: datetime,
) -> dg.AssetCheckResult:
    """One table's freshness as a check: pass passes, warn warns, error fails; empty warns."""
    key = raw_key(dataset)
    if config is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_NAME,
            passed=False,
            metadata={"status": "missing", "error": "no dbt source for this table"},
        )
    if max_loaded_at is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_NAME,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"status": "empty", "error": "no rows loaded yet"},
        )
    freshness = config["freshness"]
    age = now - max_loaded_at
    status = freshness_status(age, freshness)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=status == "pass",
        severity=dg.AssetCheckSeverity.WARN if status == "warn" else dg.AssetCheckSeverity.ERROR,
        metadata={
            "status": status,
            "max_loaded_at": max_loaded_at.isoformat(sep=" "),
            "age_hours": round(age.total_seconds() / 3600, 2),
            "warn_after": json.dumps(freshness.get("warn_after")),
            "error_after": json.dumps(freshness.get("error_after")),
        },
    )


def newest_loads_sql(configs: Mapping[str, Mapping[str, Any]]) -> str:
    """One query: the newest ``loaded_at_field`` of each table (names from dbt's manifest)."""
    return "\nunion all\n".join(
        f"select '{name}' as source_table, max({config['loaded_at_field']}) as max_loaded_at "
        f"from {config['schema']}.{config['identifier']}"
        for name, config in sorted(configs.items())
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=raw_key(dataset),
            blocking=False,
            description=(
                "dbt source freshness of the table: the newest `_loaded_at` against the "
                "warn/error windows of `movielens_dbt/models/staging/_sources.yml`."
            ),
        )
        for dataset in DATASETS
    ],
    can_subset=True,
)
def raw_source_freshness(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> Iterator[dg.AssetCheckResult]:
    """The newest load of each selected RAW table against its dbt freshness windows."""
    configs = source_freshness_config(json.loads(movielens_project.manifest_path.read_text()))
    tables = [key.asset_key.path[-1] for key in context.selected_asset_check_keys]
    selected = {name: configs[name] for name in tables if name in configs}
    newest = dict(warehouse.query(newest_loads_sql(selected))) if selected else {}
    now = datetime.now(UTC).replace(tzinfo=None)  # _loaded_at is UTC without a time zone
    for name in tables:
        yield check_result(name.removeprefix("raw_"), configs.get(name), newest.get(name), now)
