"""The dbt project ``movielens_dbt`` as assets: staging, dimensions, facts, marts, seed, snapshot.

Every dbt test becomes an asset check on the model it tests (blocking: a failed test skips the
models downstream of it). dbt sources map onto the ``raw/raw_<dataset>`` assets.
"""

import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets
from pydantic import Field

from movielens_assets.project import movielens_project
from movielens_assets.settings import Settings, freshness_policy
from movielens_assets.warehouse.base import Warehouse


class DbtBuildConfig(dg.Config):
    """Options of a dbt build launched from Dagster (also on the launchpad)."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild incremental models and seeds from scratch (dbt --full-refresh).",
    )


class MovielensTranslator(DagsterDbtTranslator):
    """Maps sources onto the RAW assets, groups models by folder, sets the marts' freshness."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._marts_freshness = freshness_policy(settings.marts_freshness_hours)

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        """The default spec, plus a freshness policy on the marts."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.group_name == "marts":
            spec = spec.replace_attributes(freshness_policy=self._marts_freshness)
        return spec

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        """``source('raw', 'raw_movies')`` is the ``raw/raw_movies`` asset."""
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """``staging``, ``dimensions``, ``facts``, ``marts`` by folder; ``seeds``, ``snapshots``."""
        resource_type = dbt_resource_props["resource_type"]
        if resource_type in ("seed", "snapshot"):
            return f"{resource_type}s"
        fqn = dbt_resource_props["fqn"]
        return fqn[1] if len(fqn) > 2 else "models"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        """dbt ``meta.owner`` if set, otherwise the analytics team."""
        owner = dbt_resource_props.get("meta", {}).get("owner")
        return [owner] if owner else ["team:analytics-engineering"]


def incremental_relations(context: dg.AssetExecutionContext) -> dict[dg.AssetKey, tuple[str, str]]:
    """``(schema, table)`` of the selected incremental models, by asset key."""
    manifest, translator, _ = get_manifest_and_translator_from_dbt_assets([context.assets_def])
    relations = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["config"].get("materialized") != "incremental":
            continue
        key = translator.get_asset_key(node)
        if key in context.selected_asset_keys:
            relations[key] = (node["schema"], node["alias"] or node["name"])
    return relations


def load_watermark(warehouse: Warehouse, relation: tuple[str, str]) -> datetime | None:
    """The newest ``_loaded_at`` of an incremental model; None if it does not exist yet."""
    schema, table = relation
    exists = warehouse.query(
        "select count(*) from information_schema.tables "
        f"where lower(table_schema) = '{schema.lower()}' and lower(table_name) = '{table.lower()}'"
    )[0][0]
    if not exists:
        return None
    return warehouse.query(f"select max(_loaded_at) from {schema}.{table}")[0][0]


def rows_since(warehouse: Warehouse, relation: tuple[str, str], watermark: datetime | None) -> int:
    """Rows an incremental run inserted or updated: those loaded after the old watermark."""
    schema, table = relation
    where = (
        f"where _loaded_at > cast('{watermark.isoformat(sep=' ')}' as timestamp)"
        if watermark
        else ""
    )
    return warehouse.query(f"select count(*) from {schema}.{table} {where}")[0][0]


def build_dbt_assets(settings: Settings) -> dg.AssetsDefinition:
    """The dbt project's assets, with the marts' freshness policy."""

    @dbt_assets(
        manifest=movielens_project.manifest_path,
        project=movielens_project,
        dagster_dbt_translator=MovielensTranslator(settings),
    )
    def movielens_dbt_models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        warehouse: Warehouse,
        config: DbtBuildConfig,
    ) -> Iterator[Any]:
        """``dbt build`` of the selected models, seed, snapshot and tests."""
        os.environ.update(warehouse.dbt_env())
        incremental = incremental_relations(context)
        watermarks = {key: load_watermark(warehouse, table) for key, table in incremental.items()}
        args = ["build", *(["--full-refresh"] if config.full_refresh else [])]
        invocation = dbt.cli(args, context=context)
        try:
            # Buffered: on DuckDB, row counts can only be read once dbt has let go of the file.
            events = list(invocation.stream().fetch_row_counts())
        finally:
            # Row counts are queried through dbt's adapter in this process; let it go of the
            # warehouse so the next process (dbt compile, the next run) can open it.
            if invocation.adapter is not None:
                invocation.adapter.cleanup_connections()
                warehouse.release_dbt_adapter(invocation.adapter)
        for event in events:
            key = (
                context.asset_key_for_output(event.output_name)
                if isinstance(event, dg.Output)
                else None
            )
            if key in incremental:
                processed = rows_since(warehouse, incremental[key], watermarks[key])
                event = event.with_metadata({**event.metadata, "rows_processed": processed})
            yield event

    return movielens_dbt_models
