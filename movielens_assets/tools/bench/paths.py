"""Where the benchmark's inputs live: the repository's ``bench/`` folder and the dbt project."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
"""The repository root: ``movielens_assets/tools/bench/`` is three folders below it."""

BASELINE_SQL = PROJECT_ROOT / "bench" / "baseline.sql"
DBT_PROJECT_DIR = PROJECT_ROOT / "movielens_dbt"
SEED_FILE = DBT_PROJECT_DIR / "seeds" / "seed_movie_release_dates.csv"
