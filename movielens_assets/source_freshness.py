"""dbt source freshness as asset checks on the ``raw/*`` assets.

dagster-dbt does not map ``dbt source freshness``; this runs it and reports each source's
result (``loaded_at_field: _loaded_at``, the warn/error windows in ``_sources.yml``) as a
non-blocking check on the RAW asset the source maps onto.
"""

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource

from movielens_assets.assets.raw import raw_key
from movielens_assets.datasets import DATASETS
from movielens_assets.project import movielens_project
from movielens_assets.warehouse.base import Warehouse

CHECK_NAME = "dbt_source_freshness"


def freshness_results(sources_json: Path) -> dict[str, dict[str, Any]]:
    """dbt's ``sources.json`` results by source table name (``raw_ratings``)."""
    results = json.loads(sources_json.read_text())["results"]
    return {result["unique_id"].rsplit(".", 1)[-1]: result for result in results}


def check_result(dataset: str, result: Mapping[str, Any] | None) -> dg.AssetCheckResult:
    """One source's freshness as a check result: pass passes, warn warns, error fails."""
    if result is None:
        return dg.AssetCheckResult(
            asset_key=raw_key(dataset),
            check_name=CHECK_NAME,
            passed=False,
            metadata={"status": "missing", "error": "dbt reported no result for this source"},
        )
    if str(result.get("max_loaded_at") or "0001").startswith("0001"):
        # dbt reports an empty table as loaded in year 1: say what it is, and only warn
        return dg.AssetCheckResult(
            asset_key=raw_key(dataset),
            check_name=CHECK_NAME,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"status": "empty", "error": "no rows loaded yet"},
        )
    status = result["status"]
    criteria = result.get("criteria", {})
    return dg.AssetCheckResult(
        asset_key=raw_key(dataset),
        check_name=CHECK_NAME,
        passed=status == "pass",
        severity=dg.AssetCheckSeverity.WARN if status == "warn" else dg.AssetCheckSeverity.ERROR,
        metadata={
            "status": status,
            "max_loaded_at": str(result.get("max_loaded_at")),
            "age_hours": round(float(result.get("max_loaded_at_time_ago_in_s") or 0) / 3600, 2),
            "warn_after": json.dumps(criteria.get("warn_after")),
            "error_after": json.dumps(criteria.get("error_after")),
            **({"error": result["error"]} if result.get("error") else {}),
        },
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
    context: dg.AssetCheckExecutionContext, dbt: DbtCliResource, warehouse: Warehouse
) -> Iterator[dg.AssetCheckResult]:
    """Run ``dbt source freshness`` for the selected RAW tables and report each result."""
    os.environ.update(warehouse.dbt_env(context.run.run_id))
    datasets = [
        key.asset_key.path[-1].removeprefix("raw_") for key in context.selected_asset_check_keys
    ]
    # All six sources at once (a few cheap max() queries); dagster-dbt 0.29 drops the
    # `--select` flag of a cli() call made outside @dbt_assets, so nothing is selected here.
    invocation = dbt.cli(
        ["source", "freshness"],
        manifest=movielens_project.manifest_path,
        raise_on_error=False,
    )
    invocation.wait()
    sources_json = invocation.target_path / "sources.json"
    results = freshness_results(sources_json) if sources_json.exists() else {}
    for dataset in datasets:
        yield check_result(dataset, results.get(f"raw_{dataset}"))
