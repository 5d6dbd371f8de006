"""The code location: assembles what the modules define, no logic of its own."""

import dagster as dg

from movielens_assets.assets.dbt import build_dbt_assets
from movielens_assets.assets.landing import landing_files
from movielens_assets.assets.raw import build_raw_assets
from movielens_assets.checks import build_raw_checks
from movielens_assets.resources import build_resources
from movielens_assets.schedules import (
    daily_schedule,
    pipeline_job,
    raw_and_downstream_job,
    snapshot_job,
    snapshot_schedule,
)
from movielens_assets.sensors import build_s3_landing_sensor
from movielens_assets.settings import Settings
from movielens_assets.source_freshness import raw_source_freshness


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything the code location holds, configured for ``settings``."""
    return dg.Definitions(
        assets=[landing_files, build_raw_assets(settings), build_dbt_assets(settings)],
        asset_checks=[raw_source_freshness, *build_raw_checks()],
        jobs=[pipeline_job, raw_and_downstream_job, snapshot_job],
        schedules=[daily_schedule, snapshot_schedule],
        sensors=[build_s3_landing_sensor(settings)],
        resources=build_resources(settings),
        # One process per run: DuckDB admits one writer process, and the stages are
        # sequential anyway (the RAW step loads datasets in parallel threads).
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
