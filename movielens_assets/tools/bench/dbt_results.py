"""Where dbt's time went, from the ``run_results.json`` a dbt call leaves in its target folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from movielens_assets.tools.bench.paths import DBT_PROJECT_DIR


def dbt_run_results(target_dir: Path) -> dict[str, Any]:
    """Where dbt's time went: total elapsed, seconds per resource type, the slowest nodes."""
    path = target_dir / "run_results.json"
    if not path.exists():
        return {}
    results = json.loads(path.read_text())
    nodes = [
        {
            "node": result["unique_id"].split(".")[2],
            "type": result["unique_id"].split(".", 1)[0],
            "status": result["status"],
            "seconds": round(result.get("execution_time") or 0.0, 2),
        }
        for result in results["results"]
    ]
    by_type: dict[str, float] = {}
    for node in nodes:
        by_type[node["type"]] = round(by_type.get(node["type"], 0.0) + node["seconds"], 2)
    return {
        "elapsed_s": round(results.get("elapsed_time") or 0.0, 2),
        "seconds_by_type": by_type,
        # A test found rows whether its severity made that a failure or a warning.
        "failed": sorted(n["node"] for n in nodes if n["status"] in ("fail", "error", "warn")),
        "slowest": sorted(nodes, key=lambda node: -node["seconds"])[:15],
    }


def dagster_dbt_run_results(run_id: str) -> dict[str, Any]:
    """``run_results.json`` of the dbt step of a Dagster run (dagster-dbt's per-run folder).

    dagster-dbt puts that folder under ``$DBT_TARGET_PATH``, which ``project.py`` points at
    ``$MOVIELENS_HOME/dbt-target``.
    """
    target = DBT_PROJECT_DIR / os.environ.get("DBT_TARGET_PATH", "target")
    folders = sorted(
        target.glob(f"movielens_dbt_models-{run_id[:7]}-*"), key=lambda path: path.stat().st_mtime
    )
    return dbt_run_results(folders[-1]) if folders else {}
