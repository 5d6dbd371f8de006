"""The generator's DuckDB: in memory, spilling to disk, with the seeded random macros.

Every random choice is ``hash(key, seed, salt)`` mapped to [0, 1) by the ``uniform`` macros, so
a run is deterministic for its seed; ``copy_to_csv`` writes a query as a GroupLens file.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from movielens_assets.tools.generate.shape import POPULARITY_SKEW, RATING_COUNTS, RATING_WEIGHTS

MEMORY_LIMIT = "2GB"
"""DuckDB's memory limit while generating; beyond it DuckDB spills to a temporary directory."""


def connect(spill_dir: Path, seed: int) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to ``spill_dir``, with the seeded random macros."""
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill_dir)})
    # Progress is read with query_progress() (generate's progress callback), not printed by DuckDB.
    con.execute("set enable_progress_bar = true")
    con.execute("set enable_progress_bar_print = false")
    for macro in _random_macros(int(seed)):
        con.execute(macro)
    return con


def _random_macros(seed: int) -> tuple[str, ...]:
    """SQL macros for deterministic randomness: every draw hashes its key, the seed and a salt."""
    exponent, offset = POPULARITY_SKEW
    return (
        # DuckDB combines the hashes of several arguments weakly, so hash the result again
        # (a full 64-bit mix); keep 53 random bits and scale them to [0, 1), never exactly 1.
        f"""create macro uniform(salt, k) as
            (hash(hash(k, {seed}, salt)) >> 11) / 9007199254740992.0""",
        f"""create macro uniform2(salt, k1, k2) as
            (hash(hash(k1, k2, {seed}, salt)) >> 11) / 9007199254740992.0""",
        # Inverse CDF of the density (x + eps) ** -alpha on [0, 1): maps a uniform p to a
        # fraction of a ranked list, small fractions (the head) far more often than large ones.
        """create macro skewed(p, alpha, eps) as greatest(0.0, pow(
            pow(eps, 1 - alpha) - p * (pow(eps, 1 - alpha) - pow(1 + eps, 1 - alpha)),
            1 / (1 - alpha)) - eps)""",
        f"create macro seed_hash(salt) as hash(hash(salt, {seed}))",
        f"create macro popular(p) as skewed(p, {exponent}, {offset})",
        """create macro word(kind, p) as
            getvariable(kind)[1 + floor(p * len(getvariable(kind)))::bigint]""",
        f"create macro star_rating(x) as {_star_rating_case('x')}",
        f"create macro uniform_mix(w) as {_uniform_sum_cdf('w', RATING_WEIGHTS)}",
    )


def copy_to_csv(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    """Write ``query`` to ``path`` as a GroupLens CSV (header, LF, minimal quoting); its rows."""
    target = str(path).replace("'", "''")
    copied = con.execute(f"copy ({query}) to '{target}' (header, delimiter ',')").fetchone()
    return int(copied[0]) if copied else 0


def _star_rating_case(x: str) -> str:
    """SQL turning a uniform ``x`` into a star rating with ml-20m's share of each star value."""
    total = sum(RATING_COUNTS.values())
    cumulative, branches = 0, []
    for stars, count in list(RATING_COUNTS.items())[:-1]:
        cumulative += count
        branches.append(f"when {x} < {cumulative / total!r} then {stars}")
    last = list(RATING_COUNTS)[-1]
    return f"(case {' '.join(branches)} else {last} end)::decimal(2, 1)"


def _uniform_sum_cdf(w: str, weights: tuple[float, float, float]) -> str:
    """SQL for the CDF of ``a*U1 + b*U2 + c*U3`` (independent uniforms) evaluated at ``w``.

    Feeding a weighted sum of uniforms through its own CDF gives back a uniform, so correlated
    ratings (good movies, lenient users) keep exactly the target share of each star value.
    """
    a, b, c = weights
    corners = (
        (0.0, 1),
        (a, -1),
        (b, -1),
        (c, -1),
        (a + b, 1),
        (a + c, 1),
        (b + c, 1),
        (a + b + c, -1),
    )
    terms = " ".join(
        f"{'+' if sign > 0 else '-'} pow(greatest({w} - {corner!r}, 0), 3)"
        for corner, sign in corners
    )
    return f"(({terms}) / {6 * a * b * c!r})"
