"""The one dbt project. Nothing else in the package knows where dbt lives.

The manifest comes from ``prepare_if_dev()`` under ``dagster dev`` and from
``dagster-dbt project prepare-and-package --file movielens_assets/project.py`` everywhere else
(``make`` and the ``movielens`` command run it). This module has no relative imports so that
command can load it on its own.
"""

import os
from pathlib import Path

from dagster_dbt import DbtProject

from movielens_assets.settings import Settings

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "movielens_dbt"

# dbt's DuckDB profile needs an absolute path (dbt resolves relative ones against its working
# directory); default it to the same file the RAW loader uses, unless the user set one.
os.environ.setdefault("MOVIELENS_DUCKDB_PATH", str(Settings.from_env().duckdb_path))

movielens_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
movielens_project.prepare_if_dev()
