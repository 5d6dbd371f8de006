"""How dbt nodes become Dagster assets and checks: keys, groups, owners, freshness, docs links.

The work happens in ``get_asset_spec`` (and, for test descriptions, ``get_asset_check_spec``).
``get_asset_key`` is overridden too, only because dagster-dbt still calls it directly (for the
observations of tests dbt ran through indirect selection): it gives the same key as the spec.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtProject

from movielens_assets.lib.asset_keys import dbt_key, dbt_stage
from movielens_assets.lib.freshness import freshness_policy
from movielens_assets.settings import Settings

DEFAULT_OWNER = "team:analytics-engineering"


class MovielensTranslator(DagsterDbtTranslator):
    """The project's key scheme (``lib/asset_keys.py``), groups by folder, freshness from dbt."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._docs_url = settings.dbt_docs_url.rstrip("/")

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        """``<stage>/<name>``; a source is the ``raw/raw_<dataset>`` asset it names."""
        return dbt_key(dbt_resource_props)

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        """dagster-dbt's spec with the stage as group, the owner, freshness and a docs link."""
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec
        owner = props.get("meta", {}).get("owner") or DEFAULT_OWNER
        page = f"{self._docs_url}/#!/{props['resource_type']}/{unique_id}"
        return spec.replace_attributes(
            group_name=dbt_stage(props),
            owners=[owner],
            freshness_policy=freshness_policy(props.get("meta", {}).get("freshness")),
        ).merge_attributes(metadata={"dbt_docs": dg.MetadataValue.url(page)})

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        """dagster-dbt's check, described by the test's dbt ``description``.

        dagster-dbt reads only ``meta.description``; the YAML uses dbt's own ``description``
        property of data tests, which the dbt docs show too.
        """
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        description = manifest["nodes"].get(unique_id, {}).get("description")
        if spec is None or spec.description or not description:
            return spec
        return dg.AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=description,
            additional_deps=spec.additional_deps,
            blocking=spec.blocking,
            metadata=spec.metadata,
            automation_condition=spec.automation_condition,
        )
