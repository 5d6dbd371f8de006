"""Jobs and schedules, all as asset selections."""

import dagster as dg

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.asset_keys import raw_key

pipeline_job = dg.define_asset_job(
    "movielens_pipeline",
    selection=dg.AssetSelection.all(),
    description="Land the files, load RAW, build every dbt model and run every check.",
)


def raw_and_downstream(raw_keys: list[dg.AssetKey]) -> dg.AssetSelection:
    """RAW assets, everything downstream of them, and what those need besides (the seed,
    other datasets' RAW and staging), but never the landing uploads."""
    downstream = dg.AssetSelection.assets(*raw_keys).downstream()
    return downstream.upstream() - dg.AssetSelection.groups("landing")


raw_and_downstream_job = dg.define_asset_job(
    "raw_and_downstream_job",
    selection=raw_and_downstream([raw_key(name) for name in DATASETS]),
    description=(
        "Load new S3 files into RAW and rebuild everything downstream: dbt models, checks, "
        "snapshot. The S3 landing sensor runs it restricted to the datasets that changed."
    ),
)

snapshot_job = dg.define_asset_job(
    "snap_tags_job",
    selection=dg.AssetSelection.assets(dg.AssetKey(["snapshots", "snap_tags"])),
    description="Record tag changes since the last snapshot (SCD2 history in snapshots.snap_tags).",
)

daily_schedule = dg.ScheduleDefinition(
    name="daily_pipeline",
    job=raw_and_downstream_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    description="Every day at 04:00 UTC: load whatever landed and rebuild the whole graph.",
)

snapshot_schedule = dg.ScheduleDefinition(
    name="hourly_snap_tags",
    job=snapshot_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    description="Every hour: snapshot tags, so changes between loads are recorded too.",
)
