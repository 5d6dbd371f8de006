"""``run_bench``: generate the sets, measure every phase and part on them, assess the targets."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from movielens_assets.tools.bench.baseline import measure_baseline, plain_dbt
from movielens_assets.tools.bench.errors import BenchError
from movielens_assets.tools.bench.orchestration import Progress, Runner, machine_facts, phase_line
from movielens_assets.tools.bench.parts import PARTS, BenchContext
from movielens_assets.tools.bench.pipeline import incremental_at, pipeline_at
from movielens_assets.tools.bench.report import assess

ML_20M_RATINGS = 20_000_263
NEW_PAIRS_SHARE = 0.01
"""The incremental file's new (user, movie) pairs, as a share of the table's ratings."""
CODE_LOCATION_REPEATS = 3
PAIRS = 3
"""Baseline-then-pipeline pairs at full size; the pair with the median ratio is reported. One
run each swung the ratio from 1.15 to 1.5 on a shared 2-core machine, with no change."""


def run_bench(
    ratings: int = ML_20M_RATINGS,
    json_path: Path | None = None,
    work_dir: Path | None = None,
    progress: Progress | None = None,
    seed: int = 42,
    code_location_repeats: int = CODE_LOCATION_REPEATS,
    quarter: bool = True,
    pairs: int = PAIRS,
) -> dict[str, Any]:
    """Generate a set of ``ratings`` ratings and measure every phase on it; see the package doc.

    ``work_dir`` keeps the generated files, the DuckDB files, the logs (``logs/``) and each
    phase's raw result (``results/``); default: a new temporary folder, kept. ``quarter=False``
    skips the second table size (its pipeline and two incremental runs; their ratios are then
    None). ``code_location_repeats`` is the parts' ``context.repeats``. ``pairs``: how many times
    the baseline and then the pipeline run at full size, one after the other; ``phases`` holds
    the pair whose ratio is the median (``median_pair``), ``pairs`` every pair's seconds.
    Returns the results, also written to ``json_path`` if given.
    """
    if pairs < 1:
        raise BenchError(f"pairs={pairs}: at least one baseline-then-pipeline pair is needed")
    report = progress or (lambda message: None)
    work = (work_dir or Path(tempfile.mkdtemp(prefix="movielens-bench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work, report)
    quarter_rows = max(ratings // 4, 1_000)
    new_full = max(1, round(ratings * NEW_PAIRS_SHARE))
    new_quarter = max(1, round(quarter_rows * NEW_PAIRS_SHARE))
    started = time.perf_counter()
    facts = machine_facts()
    report(f"bench: {ratings:,} ratings on {facts['cores']} cores; work in {work}")

    full_dir, quarter_dir = work / "data" / "full", work / "data" / "quarter"
    prep: dict[str, dict[str, Any]] = {}
    sizes = [("full", ratings, full_dir)]
    if quarter:
        sizes.append(("quarter", quarter_rows, quarter_dir))
    for label, size, folder in sizes:
        shutil.rmtree(folder, ignore_errors=True)
        generated = runner.phase(
            f"generate-{label}", "generate", {"out_dir": str(folder), "ratings": size, "seed": seed}
        )
        prep[f"generate_{label}"] = phase_line(
            generated,
            generated.result["timed_s"],
            size,
            "movielens generate (untimed)",
            dataset_rows=generated.result["rows"],
        )

    phases: dict[str, dict[str, Any]] = {}
    phases["plain_dbt"], prep["plain_dbt_raw_load"], plain_database = plain_dbt(
        runner, full_dir, ratings
    )
    phases["plain_dbt"]["warehouse"] = str(plain_database)

    with runner.s3_server() as s3_record:
        # the runs' dbt calls fork from a warm dbt, as under `movielens dev`
        with runner.dbt_server() as dbt_record:
            measured_pairs = []
            for number in range(1, pairs + 1):
                label = "baseline" if number == 1 else f"baseline-{number}"
                baseline = measure_baseline(runner, full_dir, ratings, label)
                pipeline, landed, full_env = pipeline_at(
                    runner, "full", full_dir, ratings, "bench-full", repeat=number
                )
                if landed is not None:
                    prep["land_full"] = landed
                measured_pairs.append((baseline, pipeline))
            phases["baseline"], phases["pipeline"] = median_pair(measured_pairs)
            phases["incremental"], full_increment = incremental_at(
                runner,
                "full",
                full_env,
                full_dir,
                [full_dir / "ratings.csv"],
                new_full,
                seed,
                ratings,
            )
            quarter_increment = None
            if quarter:
                phases["pipeline_quarter"], landed, quarter_env = pipeline_at(
                    runner, "quarter", quarter_dir, quarter_rows, "bench-quarter"
                )
                if landed is not None:
                    prep["land_quarter"] = landed
                phases["incremental_quarter_same_file"], quarter_increment = incremental_at(
                    runner,
                    "quarter-same-file",
                    quarter_env,
                    quarter_dir,
                    [quarter_dir / "ratings.csv"],
                    new_full,
                    seed,
                    quarter_rows,
                )
                phases["incremental_quarter_small_file"], _ = incremental_at(
                    runner,
                    "quarter-small-file",
                    quarter_env,
                    quarter_dir,
                    [quarter_dir / "ratings.csv", quarter_increment],
                    new_quarter,
                    seed + 1,
                    quarter_rows + phases["incremental_quarter_same_file"]["new_pairs"],
                )
        context = BenchContext(
            runner=runner,
            ratings=ratings,
            seed=seed,
            data_dir=full_dir,
            env=full_env,
            repeats=code_location_repeats,
            measured=phases,
        )
        for part in PARTS:
            phases[part.name] = part.measure(context)
    s3_peak = s3_record.get("peak_rss_mib")

    counts = {
        "baseline": runner.phase(
            "counts-baseline", "counts", {"database": phases["baseline"]["warehouse"]}
        ).result["counts"],
        "plain_dbt": runner.phase(
            "counts-plain-dbt", "counts", {"database": str(plain_database)}
        ).result["counts"],
    }
    dbt_peak = dbt_record.get("peak_rss_mib")
    ratios, targets = assess(phases, s3_peak, dbt_peak)
    results = {
        "ratings": ratings,
        "seed": seed,
        "work_dir": str(work),
        "machine": facts,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_s": round(time.perf_counter() - started, 1),
        "phases": phases,
        "pairs": [
            {
                "baseline_s": baseline["wall_s"],
                "pipeline_s": pipeline["wall_s"],
                "ratio": round(pipeline["wall_s"] / baseline["wall_s"], 3),
            }
            for baseline, pipeline in measured_pairs
        ],
        "preparation": prep,
        "s3_server_peak_rss_mib": round(s3_peak, 1) if s3_peak is not None else None,
        "dbt_server_peak_rss_mib": round(dbt_peak, 1) if dbt_peak is not None else None,
        "ratios": ratios,
        "targets": targets,
        "increments": {
            "full": str(full_increment),
            "quarter_same_file": str(quarter_increment) if quarter_increment else None,
        },
        "counts": counts,
    }
    if json_path is not None:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))
    return results


def median_pair(pairs: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """The (baseline, pipeline) pair whose pipeline / baseline ratio is the median (the lower
    middle one of an even number). Each pair ran one after the other, so a machine that slows
    down or speeds up between pairs moves both of a pair alike."""
    ranked = sorted(pairs, key=lambda pair: pair[1]["wall_s"] / pair[0]["wall_s"])
    return ranked[(len(ranked) - 1) // 2]
