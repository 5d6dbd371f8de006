"""The parent side of the two references: the bare-DuckDB baseline and dbt alone.

The baseline runs ``bench/baseline.sql`` (every model and every dbt test, typed straight into
DuckDB); plain dbt loads RAW with that script's RAW section (untimed), then times ``dbt build``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from movielens_assets.tools.bench.dbt_results import dbt_run_results
from movielens_assets.tools.bench.errors import BenchError
from movielens_assets.tools.bench.orchestration import Runner, phase_line, tail
from movielens_assets.tools.bench.paths import DBT_PROJECT_DIR


def measure_baseline(
    runner: Runner, data_dir: Path, ratings: int, label: str = "baseline"
) -> dict[str, Any]:
    """``bench/baseline.sql`` in a fresh DuckDB file (timed inside the script's process);
    ``label`` names its log and result files."""
    database = runner.work / "baseline" / "baseline.duckdb"
    baseline = runner.phase(
        label, "baseline", {"database": str(database), "data_dir": str(data_dir)}
    )
    return phase_line(
        baseline,
        baseline.result["timed_s"],
        ratings,
        "bench/baseline.sql in bare DuckDB",
        tests=baseline.result["tests"],
        failed_tests=baseline.result["failed_tests"],
        warehouse=str(database),
    )


def plain_dbt(runner: Runner, data_dir: Path, ratings: int) -> tuple[dict, dict, Path]:
    """RAW loaded by the baseline's RAW section (untimed), then ``dbt build`` alone (timed)."""
    folder = runner.work / "plain-dbt"
    database = folder / "warehouse.duckdb"
    preload = runner.phase(
        "plain-dbt-raw-load",
        "baseline",
        {"database": str(database), "data_dir": str(data_dir), "raw_only": True},
    )
    target = folder / "target"
    shutil.rmtree(target, ignore_errors=True)
    # The parse state first (untimed), as the pipeline's home has it: dbt build parses as a
    # second dbt call does.
    parsed = runner.phase(
        "plain-dbt-parse", "dbt-parse", {"target": str(target)}, MOVIELENS_DUCKDB_PATH=str(database)
    )
    dbt = Path(sys.executable).parent / "dbt"
    argv = [
        str(dbt if dbt.exists() else "dbt"),
        "build",
        # as the pipeline's dbt step: dbt's unit tests are a development check
        "--exclude-resource-type",
        "unit_test",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(folder / "logs"),
    ]
    runner.progress("bench: plain dbt build ...")
    measured = runner.command(
        "plain-dbt-build",
        argv,
        runner.env(MOVIELENS_DUCKDB_PATH=str(database)),
        check=False,
    )
    run_results = dbt_run_results(target)
    if not run_results:
        raise BenchError(
            f"dbt build wrote no run_results.json; see {measured.log}:\n" + tail(measured.log)
        )
    runner.progress(f"bench: plain dbt build: {measured.wall_s:.1f} s")
    line = phase_line(
        measured,
        measured.wall_s,
        ratings,
        "dbt build alone on a preloaded RAW",
        exit_code=measured.returncode,
        first_parse_s=round(parsed.result["timed_s"], 2),
        dbt=run_results,
        failed_tests=run_results.get("failed", []),
    )
    load_line = phase_line(
        preload,
        preload.result["timed_s"],
        ratings,
        "RAW preload for plain dbt (baseline.sql RAW section; untimed)",
    )
    return line, load_line, database
