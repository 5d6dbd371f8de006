"""The code location import: how long a new process takes to load ``defs`` (a bench part)."""

from __future__ import annotations

import statistics
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from movielens_assets.tools.bench.parts import BenchContext


def measure(context: BenchContext) -> dict[str, Any]:
    """Wall time of ``from movielens_assets.definitions import defs`` in a new process.

    Run ``context.repeats`` times in the environment of the full-size pipeline; the row keeps
    the median and every time.
    """
    runner, repeats = context.runner, context.repeats
    walls, peaks = [], []
    for number in range(1, repeats + 1):
        measured = runner.command(
            f"code-location-{number}",
            [sys.executable, "-c", "from movielens_assets.definitions import defs"],
            runner.env(**context.env),
        )
        walls.append(measured.wall_s)
        peaks.append(measured.peak_rss_mib)
    runner.progress(f"bench: code location loads in {', '.join(f'{w:.1f}' for w in walls)} s")
    return {
        "what": f"import the code location (median of {repeats})",
        "wall_s": round(statistics.median(walls), 2),
        "all_s": [round(wall, 2) for wall in walls],
        "peak_rss_mib": round(max(peaks), 1),
        "rows": None,
        "rows_per_s": None,
    }
