"""The one asset-key scheme of the project: ``<stage>/<name>`` for every asset of every layer.

The first part is the asset's group, which is its stage in the data flow; the second is the
name a person knows it by (the dataset, or the table in the warehouse):

======================  =======================================  ===========================
stage (group)           key                                      what it is
======================  =======================================  ===========================
``landing``             ``landing/ratings``                      the dataset's files in S3
``raw``                 ``raw/raw_ratings``                      ``raw.raw_ratings``; dbt's
                                                                 ``source('raw', ...)``
``staging``             ``staging/src_ratings``                  dbt models, by folder
``dimensions``          ``dimensions/dim_movies``
``facts``               ``facts/fct_ratings``
``marts``               ``marts/mart_movie_ratings``
``seeds``               ``seeds/seed_movie_release_dates``       dbt seeds
``snapshots``           ``snapshots/snap_tags``                  dbt snapshots
======================  =======================================  ===========================
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

LANDING = "landing"
RAW = "raw"


def landing_key(dataset: str) -> dg.AssetKey:
    """``landing/<dataset>``: the dataset's CSV files in the landing bucket."""
    return dg.AssetKey([LANDING, dataset])


def raw_key(dataset: str) -> dg.AssetKey:
    """``raw/raw_<dataset>``: the RAW table, dbt's ``source('raw', 'raw_<dataset>')``."""
    return dg.AssetKey([RAW, f"raw_{dataset}"])


def dbt_stage(dbt_resource_props: Mapping[str, Any]) -> str:
    """The stage of a dbt node: its folder under ``models/``, or ``seeds`` / ``snapshots``."""
    resource_type = dbt_resource_props["resource_type"]
    if resource_type in ("seed", "snapshot"):
        return f"{resource_type}s"
    if resource_type == "source":
        return dbt_resource_props["source_name"]
    fqn = dbt_resource_props["fqn"]
    return fqn[1] if len(fqn) > 2 else "models"


def dbt_key(dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
    """``<stage>/<name>`` of a dbt node; a source is the RAW asset it names."""
    return dg.AssetKey([dbt_stage(dbt_resource_props), dbt_resource_props["name"]])
