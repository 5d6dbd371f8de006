"""dbt's events as Dagster events, each as soon as dbt finishes its node.

dagster-dbt turns each of dbt's structured log lines into Dagster events
(``DbtCliEventMessage.to_default_asset_events``). Read straight from dbt's output, with no
post-processing thread pool: dagster-dbt's ``fetch_row_counts()`` / ``fetch_column_metadata()``
wrap the stream in Dagster's ``imap``, which spins a core while it waits for dbt, and on DuckDB
they hold every event back until dbt exits (they query the file through an adapter in this
process, and DuckDB admits one writer).

Row counts and columns come from dbt itself: the post-hook ``log_dagster_metadata``
(``movielens_dbt/macros/log_dagster_metadata.sql``) logs them with dbt's own connection right
after it builds a table, and they go on that node's materialization here.

A failed test's check result is the one event held back: its sample of failing rows
(``failing_rows.py``) is queried through the warehouse, which on DuckDB can only be read once
dbt has let go of the file. Passed checks go out at once.
"""

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliInvocation

from movielens_assets.defs.dbt.failing_rows import is_failed_check

METADATA_PREFIX = "movielens-metadata "
"""How the post-hook ``log_dagster_metadata`` starts its line (not JSON as a whole, so dagster-dbt
passes it on instead of taking it for its own column-metadata format)."""


def parse_metadata_line(message: str) -> dict[str, Any] | None:
    """The payload of one ``movielens-metadata {...}`` log line; None for any other line."""
    if not message.startswith(METADATA_PREFIX):
        return None
    try:
        payload = json.loads(message[len(METADATA_PREFIX) :])
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def table_metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``dagster/row_count`` and ``dagster/column_schema`` from a post-hook payload."""
    columns = [
        dg.TableColumn(name=str(column["name"]), type=str(column["type"]))
        for column in payload.get("columns", [])
    ]
    metadata: dict[str, Any] = {}
    if "row_count" in payload:
        metadata["dagster/row_count"] = dg.MetadataValue.int(int(payload["row_count"]))
    if columns:
        metadata["dagster/column_schema"] = dg.MetadataValue.table_schema(
            dg.TableSchema(columns=columns)
        )
    return metadata


def unique_id_of(event: Any) -> str | None:
    """The dbt unique id dagster-dbt records on each event's metadata."""
    value = getattr(event, "metadata", {}).get("unique_id")
    return None if value is None else str(getattr(value, "value", value))


@dataclass
class LiveDbtEvents:
    """Dagster events of one dbt invocation, yielded while dbt runs.

    After the iteration: ``built`` holds the dbt unique ids whose materialization went out, and
    ``held`` the failed checks' results, to be yielded once dbt has exited.
    """

    invocation: DbtCliInvocation
    context: dg.AssetExecutionContext
    built: list[str] = field(default_factory=list)
    held: list[dg.AssetCheckResult] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        tables: dict[str, dict[str, Any]] = {}
        for message in self.invocation.stream_raw_events():
            raw = message.raw_event
            unique_id = raw.get("data", {}).get("node_info", {}).get("unique_id")
            payload = parse_metadata_line(raw.get("info", {}).get("msg", ""))
            if payload is not None and unique_id:
                tables[unique_id] = table_metadata(payload)
                continue
            for event in message.to_default_asset_events(
                manifest=self.invocation.manifest,
                dagster_dbt_translator=self.invocation.dagster_dbt_translator,
                context=self.context,
                target_path=self.invocation.target_path,
                project=self.invocation.project,
            ):
                node = unique_id_of(event)
                if isinstance(event, dg.Output):
                    if node in tables:
                        event = event.with_metadata({**event.metadata, **tables.pop(node)})
                    if node:
                        self.built.append(node)
                if isinstance(event, dg.AssetCheckResult) and is_failed_check(event):
                    self.held.append(event)
                    continue
                yield event
