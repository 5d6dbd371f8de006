"""The parent side of the pipeline: ``movielens run`` on landed files, then incremental runs.

``pipeline_at`` lands a generated set in its own bucket (untimed) and runs the pipeline in a
fresh ``MOVIELENS_HOME``; ``incremental_at`` writes one more ratings file, lands it, ticks the
S3 landing sensor and runs what it requests, on the warehouse ``pipeline_at`` left.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from movielens_assets.tools.bench.orchestration import Runner, phase_line

RE_RATINGS_PER_NEW_PAIR = 0.1
"""Re-ratings of existing pairs in the incremental file, per new pair."""


def pipeline_at(
    runner: Runner,
    label: str,
    data_dir: Path,
    ratings: int,
    bucket: str,
    repeat: int = 1,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, str]]:
    """Land a set in its own bucket and parse the dbt project in a fresh home (both untimed),
    then ``movielens run`` in it. A ``repeat`` after the first runs on the files the first one
    landed, in a fresh home again; it has no landing line (None)."""
    home = runner.work / "homes" / label
    shutil.rmtree(home, ignore_errors=True)
    env = {"MOVIELENS_HOME": str(home), "MOVIELENS_S3_BUCKET": bucket}
    suffix = f"{label}-{repeat}" if repeat > 1 else label
    landed = (
        runner.phase(f"land-{label}", "land", {"data_dir": str(data_dir)}, **env)
        if repeat == 1
        else None
    )
    # The home's parse state (untimed): the run parses as every run after a home's first does.
    parsed = runner.phase(f"dbt-parse-{suffix}", "dbt-parse", {}, **env)
    measured = runner.phase(f"pipeline-{suffix}", "pipeline", {"data_dir": str(data_dir)}, **env)
    result = measured.result
    stages = result["stages"]
    landing = result["steps"].get("landing_files", stages.get("landing", 0.0))
    line = phase_line(
        measured,
        result["run_wall_s"] - landing,
        ratings,
        "movielens run: the run start to end, less its landing step (files already in S3)",
        stages=stages,
        steps=result["steps"],
        run_wall_s=result["run_wall_s"],
        first_parse_s=round(parsed.result["timed_s"], 2),
        process_work_s=round(result["process_work_s"], 2),
        python_peak_rss_mib=round(result["self_peak_rss_mib"], 1),
        dbt_peak_rss_mib=round(result["children_peak_rss_mib"], 1),
        success=result["success"],
        checks=result["checks"],
        errors=result["errors"],
        failed_tests=result["dbt"].get("failed", []),
        dbt=result["dbt"],
        warehouse=str(home / "warehouse.duckdb"),
        counts=runner.phase(
            f"counts-pipeline-{suffix}", "counts", {"database": str(home / "warehouse.duckdb")}
        ).result["counts"],
    )
    if landed is None:
        return line, None, env
    land_line = phase_line(
        landed,
        landed.result["timed_s"],
        ratings,
        "files uploaded to S3 (untimed)",
        bytes=landed.result["bytes"],
    )
    return line, land_line, env


def incremental_at(
    runner: Runner,
    label: str,
    env: dict[str, str],
    data_dir: Path,
    existing: list[Path],
    new: int,
    seed: int,
    table_rows: int,
) -> tuple[dict[str, Any], Path]:
    """Write an increment file, then land it and run what the sensor requests."""
    file = runner.work / "increments" / label / f"ratings-increment-{label}.csv"
    made = runner.phase(
        f"make-increment-{label}",
        "make-increment",
        {
            "out": str(file),
            "existing": [str(path) for path in existing],
            "movies": str(data_dir / "movies.csv"),
            "new": new,
            "rerated": max(1, round(new * RE_RATINGS_PER_NEW_PAIR)),
            "seed": seed,
        },
    ).result
    measured = runner.phase(f"incremental-{label}", "incremental", {"file": str(file)}, **env)
    result = measured.result
    line = phase_line(
        measured,
        result["run_wall_s"],
        made["rows"],
        f"the run the sensor requests, start to end, on a {table_rows:,}-row table",
        table_rows=table_rows,
        steps=result["steps"],
        file=str(file),
        new_pairs=made["new_pairs"],
        rerated=made["rerated"],
        stages=result["stages"],
        tick_and_run_s=round(result["tick_and_run_s"], 2),
        run_wall_s=result["run_wall_s"],
        python_peak_rss_mib=round(result["self_peak_rss_mib"], 1),
        dbt_peak_rss_mib=round(result["children_peak_rss_mib"], 1),
        success=result["success"],
        checks=result["checks"],
        errors=result["errors"],
        failed_tests=result["dbt"].get("failed", []),
        selection=result["selection"],
        dbt=result["dbt"],
        counts=runner.phase(
            f"counts-incremental-{label}",
            "counts",
            {"database": str(Path(env["MOVIELENS_HOME"]) / "warehouse.duckdb")},
        ).result["counts"],
    )
    return line, file
