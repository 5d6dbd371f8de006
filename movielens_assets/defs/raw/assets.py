"""Group ``raw``: each dataset's S3 files loaded into ``raw.raw_<dataset>``, once per file.

The datasets load in parallel threads of one step: on DuckDB only one process may write the
file, and on Snowflake the COPY statements run in the warehouse anyway. The step runs in the
target's RAW pool (``Settings.pools``): on DuckDB the one pool of every step that opens the file.
"""

import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import dagster as dg

from movielens_assets.datasets import DATASETS
from movielens_assets.lib.asset_keys import landing_key, raw_key
from movielens_assets.lib.freshness import freshness_policy, source_freshness_config
from movielens_assets.lib.redact import RedactedLog, redact_json, redacted_errors
from movielens_assets.lib.s3 import S3Object
from movielens_assets.project import movielens_project
from movielens_assets.resources import LandingBucket
from movielens_assets.settings import Settings
from movielens_assets.warehouse.base import LoadError, LoadReport, Warehouse


def raw_metadata(report: LoadReport, uri: str) -> dict[str, Any]:
    """What the asset page shows about one dataset's load."""
    file_results = redact_json(report.file_results())  # the warehouse's own error texts
    return {
        **({"copy_results": dg.MetadataValue.json(file_results)} if file_results else {}),
        "s3_uri": dg.MetadataValue.url(uri),
        "files_loaded": len(report.loaded),
        "files_skipped": len(report.skipped),
        "rows_loaded": report.rows_loaded,
        "loaded_files": dg.MetadataValue.json(
            [{"key": item.key, "etag": item.etag, "rows": item.rows} for item in report.loaded]
        ),
        "files_rejected": len(report.rejected),
        "rejected_files": dg.MetadataValue.json(
            [
                {"key": item.key, "etag": item.etag, "line": item.line, "error": item.error}
                for item in report.rejected
            ]
        ),
        "dagster/row_count": report.table_rows,
    }


def build_raw_assets(settings: Settings) -> dg.AssetsDefinition:
    """The RAW multi-asset, tagged with the warehouse's kind.

    Each table's freshness policy follows the dbt source's ``freshness`` windows, the one place
    they are declared (``lib/freshness.py``).
    """
    sources = source_freshness_config(json.loads(movielens_project.manifest_path.read_text()))

    @dg.multi_asset(
        name="raw_tables",
        specs=[
            dg.AssetSpec(
                raw_key(name),
                deps=[landing_key(name)],
                description=(
                    f"{dataset.description} Append-only: every loaded file's rows with "
                    "`_source_file` and `_loaded_at`."
                ),
                group_name="raw",
                kinds={settings.warehouse_kind, "table"},
                owners=["team:data-engineering"],
                skippable=True,
                metadata={"dagster/table_name": f"raw.raw_{name}"},
                freshness_policy=freshness_policy(sources.get(f"raw_{name}", {}).get("freshness")),
            )
            for name, dataset in DATASETS.items()
        ],
        can_subset=True,
        pool=settings.pools.raw,
    )
    def raw_tables(context: dg.AssetExecutionContext, s3: LandingBucket, warehouse: Warehouse):
        """Load every S3 file of each selected dataset that the ledger does not hold yet."""
        selected = [key.path[-1].removeprefix("raw_") for key in context.selected_asset_keys]
        log = RedactedLog(context.log)
        with redacted_errors():  # an S3 or warehouse error may name a URI with a password
            client = s3.get_client()
            warehouse.ensure_raw_tables()

            def listing(dataset: str) -> list[S3Object]:
                return s3.list_dataset(dataset, client)

            def load(dataset: str, objects: list[S3Object]) -> LoadReport:
                return warehouse.load_dataset(
                    dataset, objects, client, s3.bucket, context.run.run_id, log
                )

            failures: list[str] = []
            with ThreadPoolExecutor(max_workers=3) as pool:
                listed = dict(zip(selected, pool.map(listing, selected), strict=True))
                size = {name: sum(obj.size for obj in objects) for name, objects in listed.items()}
                # The largest dataset first: its load is the step's critical path (at ml-20m,
                # ratings started last, behind three small ones). Each is reported when done.
                futures = {
                    pool.submit(load, name, listed[name]): name
                    for name in sorted(selected, key=size.__getitem__, reverse=True)
                }
                for future in as_completed(futures):
                    name = futures[future]
                    try:
                        report = future.result()
                    except LoadError as error:
                        failures.append(f"raw_{name}: {error}")
                        continue
                    yield dg.MaterializeResult(
                        asset_key=raw_key(name),
                        metadata=raw_metadata(report, s3.dataset_uri(name)),
                    )
            if failures:
                raise dg.Failure(
                    description="RAW load failed; files loaded before the error are kept:\n"
                    + "\n".join(sorted(failures))
                )

    return raw_tables


@dg.definitions
def defs() -> dg.Definitions:
    """RAW's assets, configured from the environment."""
    return dg.Definitions(assets=[build_raw_assets(Settings.from_env())])
