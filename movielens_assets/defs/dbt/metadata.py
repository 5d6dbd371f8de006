"""Metadata the dbt assets' pages show beyond dagster-dbt's own (row counts, columns, lineage).

- incremental models: ``rows_processed``, the rows a run inserted or updated (loaded after the
  previous load watermark), which shows that an incremental run touched only the new rows;
- ``mart_movie_ratings``: a preview table of the top movies;
- ``fct_ratings``: the distribution of ratings as a bar chart.

All of it is read from the warehouse after dbt has finished (an ``AssetObservation`` of each
model dbt built, after its materialization), with plain SQL that runs on DuckDB and Snowflake
alike. Row counts and columns come with the materialization itself (``events.py``).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg

from movielens_assets.lib.dagster_internals import dbt_manifest_and_translator
from movielens_assets.warehouse.base import Warehouse

TOP_MOVIES_MIN_RATINGS = 100
BAR_WIDTH = 40


@dataclass(frozen=True)
class Relation:
    """Where a dbt model lives."""

    schema: str
    table: str
    incremental: bool
    unique_id: str

    @property
    def name(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.table}"


def model_relations(context: dg.AssetExecutionContext) -> dict[dg.AssetKey, Relation]:
    """The relations of the selected dbt models, by asset key."""
    manifest, translator = dbt_manifest_and_translator(context.assets_def)
    relations = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        key = translator.get_asset_key(node)
        if key in context.selected_asset_keys:
            relations[key] = Relation(
                schema=node["schema"],
                table=node["alias"] or node["name"],
                incremental=node["config"].get("materialized") == "incremental",
                unique_id=node["unique_id"],
            )
    return relations


def load_watermark(warehouse: Warehouse, relation: Relation) -> datetime | None:
    """The newest ``_loaded_at`` of an incremental model; None if it does not exist yet."""
    exists = warehouse.query(
        "select count(*) from information_schema.tables "
        f"where lower(table_schema) = '{relation.schema.lower()}' "
        f"and lower(table_name) = '{relation.table.lower()}'"
    )[0][0]
    if not exists:
        return None
    return warehouse.query(f"select max(_loaded_at) from {relation.name}")[0][0]


def rows_since(warehouse: Warehouse, relation: Relation, watermark: datetime | None) -> int:
    """Rows an incremental run inserted or updated: those loaded after the old watermark."""
    where = ""
    if watermark is not None:
        where = f"where _loaded_at > cast('{watermark.isoformat(sep=' ')}' as timestamp)"
    return warehouse.query(f"select count(*) from {relation.name} {where}")[0][0]


def top_movies_table(warehouse: Warehouse, relation: Relation) -> dg.TableMetadataValue:
    """The ten best-rated movies with more than 100 ratings, as a table preview."""
    rows = warehouse.query(
        "select movie_title, round(average_rating, 2), total_ratings "
        f"from {relation.name} where total_ratings > {TOP_MOVIES_MIN_RATINGS} "
        "order by average_rating desc, movie_title limit 10"
    )
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {"movie_title": title, "average_rating": float(average), "ratings": count}
            )
            for title, average, count in rows
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("movie_title", "string"),
                dg.TableColumn("average_rating", "float"),
                dg.TableColumn("ratings", "int"),
            ]
        ),
    )


def rating_histogram(counts: list[tuple[float, int]]) -> str:
    """A Markdown bar chart of how many ratings each star value got."""
    largest = max((count for _, count in counts), default=0) or 1
    lines = ["| rating | ratings | |", "|---:|---:|:---|"]
    for rating, count in counts:
        bar = "█" * max(1, round(BAR_WIDTH * count / largest)) if count else ""
        lines.append(f"| {float(rating):.1f} | {count:,} | {bar} |")
    return "\n".join(lines)


def model_metadata(
    warehouse: Warehouse, relation: Relation, watermark: datetime | None
) -> dict[str, Any]:
    """Extra metadata for one materialized model."""
    metadata: dict[str, Any] = {}
    if relation.incremental:
        metadata["rows_processed"] = rows_since(warehouse, relation, watermark)
    if relation.table == "mart_movie_ratings":
        metadata["top_movies"] = top_movies_table(warehouse, relation)
    if relation.table == "fct_ratings":
        counts = warehouse.query(
            f"select rating, count(*) from {relation.name} group by rating order by rating"
        )
        metadata["rating_distribution"] = dg.MetadataValue.md(rating_histogram(counts))
    return metadata
