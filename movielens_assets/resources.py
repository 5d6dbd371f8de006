"""The resources, keyed the same in every environment: ``s3``, ``warehouse``, ``dbt``.

Only their configuration changes between ``MOVIELENS_TARGET=local`` and ``prod``, and it is
decided here (like dagster-open-platform's ``environment_helpers``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_dbt import DbtCliResource
from pydantic import Field

from movielens_assets.lib import s3 as s3lib
from movielens_assets.lib.dagster_internals import StreamingDbtCliResource
from movielens_assets.lib.s3 import S3Object
from movielens_assets.project import movielens_project
from movielens_assets.settings import Settings
from movielens_assets.warehouse.base import Warehouse
from movielens_assets.warehouse.duckdb.resource import DuckDBWarehouse


class LandingBucket(S3Resource):
    """The S3 landing zone: ``s3://<bucket>/<prefix>/<dataset>/*.csv[.gz]``.

    The endpoint and credentials come from the standard AWS variables
    (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ...), as boto3 reads them.
    """

    bucket: str = Field(description="The landing bucket (MOVIELENS_S3_BUCKET).")
    prefix: str = Field(description="The landing folder (MOVIELENS_S3_PREFIX).")

    def dataset_prefix(self, dataset: str) -> str:
        """The key prefix of one dataset, e.g. ``landing/ratings/``."""
        return s3lib.dataset_prefix(self.prefix, dataset)

    def dataset_uri(self, dataset: str) -> str:
        """The S3 URI of one dataset's folder."""
        return f"s3://{self.bucket}/{self.dataset_prefix(dataset)}"

    @staticmethod
    def is_data_file(key: str) -> bool:
        """Whether a key is one of the dataset's data files (what the RAW load reads)."""
        return key.lower().endswith((".csv", ".csv.gz"))

    def list_dataset(self, dataset: str, client: Any | None = None) -> list[S3Object]:
        """Every CSV object of a dataset, through all listing pages."""
        objects = s3lib.list_objects(
            client or self.get_client(), self.bucket, self.dataset_prefix(dataset)
        )
        return [obj for obj in objects if self.is_data_file(obj.key)]


DBT_LAUNCHER = Path(sys.executable).parent / "movielens-dbt"
"""dbt as dagster-dbt runs it: the ``movielens-dbt`` console script installed beside this Python
(``lib/tether.py``), which runs the venv's dbt (``lib/dbt_process.py``) tied to the run worker: a
worker that dies (even by SIGKILL) takes its dbt with it."""


class DbtLauncherMissingError(RuntimeError):
    """The package is installed without its ``movielens-dbt`` script (an old install)."""


def dbt_resource(settings: Settings) -> DbtCliResource:
    """dbt through dagster-dbt, run by ``movielens-dbt`` so that it ends with its run."""
    if not DBT_LAUNCHER.exists():
        raise DbtLauncherMissingError(
            f"{DBT_LAUNCHER} is missing: reinstall the project (`make install`, or "
            "`pip install -e .`) so that dbt runs tied to its run worker."
        )
    return StreamingDbtCliResource(
        project_dir=movielens_project,
        target=settings.target,
        dbt_executable=str(DBT_LAUNCHER),
        # movielens-dbt runs the dbt-core installed here: its version is the package's
        installed_dbt=str(DBT_LAUNCHER),
    )


def build_resources(settings: Settings) -> dict[str, Any]:
    """The resources for one environment."""
    warehouse: Warehouse
    if settings.target == "prod":
        from movielens_assets.warehouse.snowflake.resource import SnowflakeWarehouse

        warehouse = SnowflakeWarehouse.from_settings(settings)
    else:
        warehouse = DuckDBWarehouse.from_settings(settings)
    return {
        "s3": LandingBucket(bucket=settings.bucket, prefix=settings.prefix),
        "warehouse": warehouse,
        "dbt": dbt_resource(settings),
    }


def run_executor(settings: Settings) -> dg.ExecutorDefinition:
    """How a run executes its steps on this target.

    DuckDB: one process per run (the file admits one writer process, the ``duckdb_warehouse``
    pool keeps steps of concurrent runs apart, and the RAW step loads datasets in threads).
    Snowflake: Dagster's default, one process per step, so steps of a run that do not depend on
    each other run at once within their pools' limits.
    """
    if settings.target == "prod":
        return dg.multiprocess_executor
    return dg.in_process_executor
