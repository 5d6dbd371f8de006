"""``generate``: write the six files of an ml-20m-shaped set of any size."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.progress import DEFAULT_INTERVAL_SECONDS, logged_progress
from movielens_assets.tools.generate.catalogues import create_catalogues, create_users
from movielens_assets.tools.generate.connection import connect, copy_to_csv
from movielens_assets.tools.generate.errors import GenerationError
from movielens_assets.tools.generate.plan import ML_20M_RATINGS, plan
from movielens_assets.tools.generate.queries import dataset_queries


def generate(
    out_dir: Path,
    ratings: int = ML_20M_RATINGS,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
    movie_ids: Sequence[int] = (),
    progress_interval: float = DEFAULT_INTERVAL_SECONDS,
) -> dict[str, int]:
    """Write an ml-20m-shaped MovieLens set with ``ratings`` ratings into ``out_dir``.

    Returns the rows written per dataset name (``movies``, ``ratings``, ``tags``, ``links``,
    ``genome_tags``, ``genome_scores``). The files are byte-identical for the same ``ratings``,
    ``seed`` and ``movie_ids``; ``progress`` is called once per file written. ``movie_ids`` are
    real MovieLens ids that must exist (reference data such as the dbt seed is keyed by them).
    While a file is written, ``progress`` also gets its percentage every ``progress_interval``
    seconds (and 10 percent).
    """
    sizes = plan(ratings)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix=".generate-", dir=out_dir) as spill_dir:
        con = connect(Path(spill_dir), seed)
        try:
            create_catalogues(con, sizes, movie_ids)
            create_users(con, sizes)
            written = {}
            for name, query in dataset_queries(sizes).items():
                path = out_dir / DATASETS[name].grouplens_file
                with logged_progress(
                    con.query_progress, path.name, None, report, interval=progress_interval
                ):
                    written[name] = copy_to_csv(con, query, path)
                if written[name] != sizes.rows[name]:
                    raise GenerationError(
                        f"{path} got {written[name]:,} rows instead of {sizes.rows[name]:,}; "
                        f"this is a bug in {__name__}, try another seed meanwhile"
                    )
                report(f"wrote {path.name}: {written[name]:,} rows")
        finally:
            con.close()
    return written
