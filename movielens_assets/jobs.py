"""Jobs as asset selections."""

import dagster as dg

pipeline_job = dg.define_asset_job(
    "movielens_pipeline",
    selection=dg.AssetSelection.all(),
    description="Land the files, load RAW, build every dbt model and run every check.",
)
