"""Asset checks on RAW: no rejected files, and the ledger reconciles with the tables.

Both read the warehouse through the ``warehouse`` resource with SQL that runs unchanged on
DuckDB and Snowflake (the tables' unquoted names resolve on both):

- ``no_rejected_files`` (non-blocking) fails while the last load of a dataset rejected files
  (``raw.load_rejections``), listing their keys and errors;
- ``rows_match_ledger`` (blocking) fails when, for some S3 key, the rows the ledger says were
  loaded differ from the rows of the RAW table with that ``_source_file``. That means RAW was
  changed outside the loader, so nothing downstream is built on it.

They run in one step after the RAW load; because one of them blocks, dbt waits for that step,
so on DuckDB the checks never hold the file while dbt needs it.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from movielens_assets.datasets import DATASETS, LEDGER_TABLE
from movielens_assets.lib.asset_keys import raw_key
from movielens_assets.settings import Settings
from movielens_assets.warehouse.base import REJECTIONS_TABLE, Warehouse

NO_REJECTED_FILES = "no_rejected_files"
ROWS_MATCH_LEDGER = "rows_match_ledger"
SAMPLE_SIZE = 10
"""How many rejected files or mismatched keys a check's metadata lists."""


def dataset_literal(dataset: str) -> str:
    """A dataset name as a SQL string literal; only known datasets are accepted."""
    if dataset not in DATASETS:
        raise ValueError(f"{dataset!r} is not one of {', '.join(DATASETS)}.")
    return "'" + dataset.replace("'", "''") + "'"


def rejections_sql(dataset: str) -> str:
    """The files the last load of ``dataset`` rejected, one row each, in key order."""
    return (
        "select s3_key, etag, error, line, column_name, on_error, run_id, rejected_at\n"
        f"from raw.{REJECTIONS_TABLE}\n"
        f"where dataset = {dataset_literal(dataset)}\n"
        "order by s3_key, etag"
    )


def reconciliation_sql(dataset: str) -> str:
    """Per S3 key: the rows the ledger recorded and the rows RAW holds, in key order.

    A key loaded twice (overwritten with new content) has one ledger row per ETag; their rows
    add up. A key with rows in RAW but none in the ledger (or the reverse) shows a zero.
    """
    literal = dataset_literal(dataset)
    return (
        "with ledger as (\n"
        "    select s3_key, sum(rows_loaded) as rows_in_ledger\n"
        f"    from raw.{LEDGER_TABLE}\n"
        f"    where dataset = {literal}\n"
        "    group by s3_key\n"
        "),\n"
        "loaded as (\n"
        "    select _source_file as s3_key, count(*) as rows_in_table\n"
        f"    from raw.{DATASETS[dataset].raw_table}\n"
        "    group by _source_file\n"
        ")\n"
        "select\n"
        "    coalesce(ledger.s3_key, loaded.s3_key) as s3_key,\n"
        "    coalesce(ledger.rows_in_ledger, 0) as rows_in_ledger,\n"
        "    coalesce(loaded.rows_in_table, 0) as rows_in_table\n"
        "from ledger\n"
        "full outer join loaded on ledger.s3_key = loaded.s3_key\n"
        "order by 1"
    )


def rejections_result(dataset: str, rows: list[tuple[Any, ...]]) -> dg.AssetCheckResult:
    """``no_rejected_files`` from the rows of ``rejections_sql``."""
    rejected = [
        {"key": key, "etag": etag, "error": error, "line": line, "column": column}
        for key, etag, error, line, column, *_ in rows
    ]
    on_error = sorted({row[5] for row in rows})
    return dg.AssetCheckResult(
        asset_key=raw_key(dataset),
        check_name=NO_REJECTED_FILES,
        passed=not rejected,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"The last load rejected {len(rejected)} file(s): nothing of them is in RAW. Fix "
            "them and land them again; see README 'Failure behaviour'."
            if rejected
            else "The last load rejected no file."
        ),
        metadata={
            "rejected_files": len(rejected),
            "rejected_keys": dg.MetadataValue.json([item["key"] for item in rejected]),
            "rejections": dg.MetadataValue.json(rejected[:SAMPLE_SIZE]),
            "on_error": ", ".join(on_error) or "-",
        },
    )


def reconciliation_result(dataset: str, rows: list[tuple[Any, ...]]) -> dg.AssetCheckResult:
    """``rows_match_ledger`` from the rows of ``reconciliation_sql``."""
    mismatches = [
        {"key": key, "rows_in_ledger": int(ledger), "rows_in_table": int(table)}
        for key, ledger, table in rows
        if ledger != table
    ]
    return dg.AssetCheckResult(
        asset_key=raw_key(dataset),
        check_name=ROWS_MATCH_LEDGER,
        passed=not mismatches,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{len(mismatches)} of {len(rows)} S3 key(s) have a different row count in "
            f"raw.raw_{dataset} than in the ledger."
            if mismatches
            else f"All {len(rows)} S3 key(s) have the rows the ledger recorded."
        ),
        metadata={
            "files_checked": len(rows),
            "mismatched_files": len(mismatches),
            "rows_in_ledger": sum(int(row[1]) for row in rows),
            "rows_in_table": sum(int(row[2]) for row in rows),
            "mismatch_sample": dg.MetadataValue.json(mismatches[:SAMPLE_SIZE]),
        },
    )


def build_raw_checks(
    datasets: Iterable[str] | None = None, pool: str | None = None
) -> list[dg.AssetChecksDefinition]:
    """The RAW checks of ``datasets`` (default: all) as one step, keyed on ``raw/raw_<dataset>``,
    in concurrency ``pool`` (on DuckDB the warehouse's: the step opens the file)."""
    names = list(DATASETS if datasets is None else datasets)
    for name in names:
        dataset_literal(name)
    specs = [
        spec
        for name in names
        for spec in (
            dg.AssetCheckSpec(
                NO_REJECTED_FILES,
                asset=raw_key(name),
                blocking=False,
                description=(
                    "Fails while the last load rejected files (on_error=skip_file, or the file "
                    "that aborted it), listing their keys and errors."
                ),
            ),
            dg.AssetCheckSpec(
                ROWS_MATCH_LEDGER,
                asset=raw_key(name),
                blocking=True,
                description=(
                    "For every S3 key, the rows the ledger recorded equal the rows of the RAW "
                    "table with that _source_file."
                ),
            ),
        )
    ]

    @dg.multi_asset_check(specs=specs, name="raw_load_checks", can_subset=True, pool=pool)
    def raw_load_checks(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.AssetCheckResult]:
        """Rejected files and ledger reconciliation of every selected RAW table (on one
        connection: opening the DuckDB file per query cost more than the queries)."""
        with warehouse.reading():
            for check in sorted(context.selected_asset_check_keys, key=str):
                dataset = check.asset_key.path[-1].removeprefix("raw_")
                if check.name == NO_REJECTED_FILES:
                    yield rejections_result(dataset, warehouse.query(rejections_sql(dataset)))
                else:
                    rows = warehouse.query(reconciliation_sql(dataset))
                    yield reconciliation_result(dataset, rows)

    return [raw_load_checks]


@dg.definitions
def defs() -> dg.Definitions:
    """The load checks of every RAW table, in the target's checks pool."""
    return dg.Definitions(asset_checks=build_raw_checks(pool=Settings.from_env().pools.checks))
