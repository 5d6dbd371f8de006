"""The one dbt project. Nothing else in the package knows where dbt lives.

The manifest comes from ``prepare_if_dev()`` under ``dagster dev`` and from
``dagster-dbt project prepare-and-package --file movielens_assets/project.py`` everywhere else
(``make`` and the ``movielens`` command run it). This module has no relative imports so that
command can load it on its own.
"""

from pathlib import Path

from dagster_dbt import DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "movielens_dbt"

movielens_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
movielens_project.prepare_if_dev()
