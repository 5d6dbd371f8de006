"""A sample of the rows a failed dbt test found, for its asset check's page.

dagster-dbt reports only how many rows a test found (``dagster_dbt/failed_row_count``). For a
failed test, the test's compiled query (from the run's ``run_results.json``) runs once more,
limited to a few rows, and the rows go on the check result as a Markdown table. Passing tests
cost nothing: no query runs, and dbt's ``store_failures`` stays off.
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from movielens_assets.warehouse.base import Warehouse

SAMPLE_ROWS = 5
SAMPLE_KEY = "failing_rows_sample"
MAX_CELL_CHARS = 80


def sample_sql(compiled_sql: str, limit: int = SAMPLE_ROWS) -> str:
    """A test's compiled query (which returns its failing rows) cut to ``limit`` rows.

    The query stays on its own lines, so a trailing ``--`` comment cannot swallow the wrapper.
    """
    body = compiled_sql.strip().rstrip(";").rstrip()
    return f"select * from (\n{body}\n) as failing_rows\nlimit {int(limit)}"


def markdown_cell(value: Any) -> str:
    """One value as a Markdown table cell: ``null`` for None, pipes escaped, one line."""
    if value is None:
        return "null"
    text = " ".join(str(value).split())
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a Markdown table under a header of ``columns``."""
    lines = [
        "| " + " | ".join(markdown_cell(column) for column in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(markdown_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def compiled_tests(run_results: Mapping[str, Any]) -> dict[str, str]:
    """The compiled query of every test in a dbt ``run_results.json``, by unique id."""
    return {
        result["unique_id"]: result["compiled_code"]
        for result in run_results.get("results", [])
        if result.get("unique_id", "").startswith("test.") and result.get("compiled_code")
    }


def failing_rows_metadata(
    warehouse: Warehouse, compiled_sql: str, check_name: str, log: Any
) -> dict[str, Any]:
    """``{"failing_rows_sample": <Markdown table>}`` for one failed test; ``{}`` if unavailable.

    The check is reported either way: a warehouse that cannot be reached now only costs the
    sample, with a warning in the run's log.
    """
    try:
        columns, rows = warehouse.query_with_columns(sample_sql(compiled_sql))
    except Exception as error:  # noqa: BLE001 - any warehouse error only loses the sample
        reason = f"{type(error).__name__}: {error}"
        log.warning(f"{check_name}: no sample of the failing rows ({reason})")
        return {}
    return {SAMPLE_KEY: dg.MetadataValue.md(markdown_table(columns, rows))}


def is_failed_check(event: Any) -> bool:
    """Whether a dbt event is a failed (or warning) asset check result."""
    return isinstance(event, dg.AssetCheckResult) and not event.passed


def with_failing_rows(
    events: Sequence[Any], target_path: Path, warehouse: Warehouse, log: Any
) -> list[Any]:
    """``events`` with a sample of the failing rows on each failed dbt test's check result.

    ``target_path`` is the dbt invocation's target folder, holding its ``run_results.json``;
    it is read only when a check failed.
    """
    if not any(is_failed_check(event) for event in events):
        return list(events)
    try:
        compiled = compiled_tests(json.loads((target_path / "run_results.json").read_text()))
    except (OSError, ValueError) as error:
        log.warning(f"no samples of failing rows: cannot read dbt's run results ({error})")
        return list(events)
    sampled = []
    for event in events:
        unique_id = event.metadata.get("unique_id") if is_failed_check(event) else None
        sql = compiled.get(str(unique_id.value)) if unique_id is not None else None
        if sql:
            extra = failing_rows_metadata(warehouse, sql, event.check_name or "", log)
            event = event.with_metadata({**event.metadata, **extra})
        sampled.append(event)
    return sampled
