"""The one dbt project. Nothing else in the package knows where dbt lives.

The manifest comes from ``prepare_if_dev()`` under ``dagster dev`` and from
``dagster-dbt project prepare-and-package --file movielens_assets/project.py`` everywhere else
(``make`` and the ``movielens`` command run it). This module has no relative imports so that
command can load it on its own.
"""

import csv
import os
import shutil
from pathlib import Path

from dagster_dbt import DbtProject

from movielens_assets.settings import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "movielens_dbt"

# dbt's DuckDB profile needs an absolute path (dbt resolves relative ones against its working
# directory); default it to the same file the RAW loader uses, unless the user set one.
_settings = Settings.from_env()
os.environ.setdefault("MOVIELENS_DUCKDB_PATH", str(_settings.duckdb_path))
# dagster-dbt gives each dbt call its own folder under DBT_TARGET_PATH and seeds it with the
# partial-parse state found there. dbt discards that state when the profile differs from the one
# it parsed with (the DuckDB path does), so each MOVIELENS_HOME keeps its own: see keep_parse_state.
os.environ.setdefault("DBT_TARGET_PATH", str(_settings.dbt_target_dir))

PARTIAL_PARSE = "partial_parse.msgpack"

movielens_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
movielens_project.prepare_if_dev()


def keep_parse_state(invocation_target: Path) -> None:
    """Keep the parse state of a finished dbt call for the next one (skips dbt's ~8 s re-parse).

    dbt checks that state itself (files, profile, variables) and re-parses what changed.
    """
    fresh = invocation_target / PARTIAL_PARSE
    kept = Settings.from_env().dbt_target_dir / PARTIAL_PARSE
    if fresh.exists() and (not kept.exists() or fresh.stat().st_mtime > kept.stat().st_mtime):
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(f".{os.getpid()}.tmp")
        shutil.copy2(fresh, partial)
        partial.replace(kept)  # atomic: a concurrent dbt call reads the old or the new file


def seed_movie_ids() -> list[int]:
    """The real MovieLens movie ids the seed ``seed_movie_release_dates`` refers to."""
    with (DBT_PROJECT_DIR / "seeds" / "seed_movie_release_dates.csv").open(newline="") as file:
        return [int(row["movie_id"]) for row in csv.DictReader(file)]
