"""The code location: assembles what the modules define, no logic of its own."""

import dagster as dg

from movielens_assets.assets.dbt import movielens_dbt_models
from movielens_assets.assets.landing import landing_files
from movielens_assets.assets.raw import build_raw_assets
from movielens_assets.jobs import pipeline_job
from movielens_assets.resources import build_resources
from movielens_assets.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything the code location holds, configured for ``settings``."""
    return dg.Definitions(
        assets=[landing_files, build_raw_assets(settings.warehouse_kind), movielens_dbt_models],
        jobs=[pipeline_job],
        resources=build_resources(settings),
    )


defs = build_definitions(Settings.from_env())
