"""The Snowflake warehouse resource: its configuration, tagged sessions and the COPY of a batch.

Snowflake reads the landed files from S3 itself, through a stage that uses a storage integration
(``snowflake/setup.sql``); no AWS key ever reaches Snowflake or this code. The load algorithm
around the COPY is ``loader.py``; the statements are rendered in ``sql.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from dagster_snowflake import SnowflakeResource
from pydantic import Field

from movielens_assets.datasets import DATASETS, Dataset
from movielens_assets.lib.s3 import S3Object
from movielens_assets.settings import Settings
from movielens_assets.warehouse.base import LoadError, Warehouse
from movielens_assets.warehouse.snowflake.copy_results import (
    CopyResult,
    SnowflakeLoadReport,
    copy_results,
)
from movielens_assets.warehouse.snowflake.loader import CopyJob, CopyLoader
from movielens_assets.warehouse.snowflake.sql import (
    DEFAULT_FILE_FORMAT,
    DEFAULT_STAGE,
    LEDGER_DDL,
    RAW_SCHEMA,
    REJECTIONS_DDL,
    copy_into_sql,
    raw_table_ddl,
)

DEFAULT_DATABASE = "MOVIELENS"
DEFAULT_WAREHOUSE = "MOVIELENS_WH"
DEFAULT_ROLE = "LOADER"


def query_tag(run_id: str | None, asset: str | None, tool: str = "dagster") -> str:
    """The ``QUERY_TAG`` of a session: JSON naming the app, tool, Dagster run and asset."""
    tag: dict[str, str] = {"app": "movielens", "tool": tool}
    if run_id:
        tag["dagster_run_id"] = run_id
    if asset:
        tag["asset"] = asset
    return json.dumps(tag, separators=(",", ":"), sort_keys=True)


class SnowflakeWarehouse(Warehouse):
    """Snowflake: RAW loaded with ``COPY INTO`` from the landing stage, dbt through dbt-snowflake.

    Connections are made with dagster-snowflake's ``SnowflakeResource``; every session carries
    a ``QUERY_TAG`` naming the Dagster run and asset, so costs can be attributed in Snowflake's
    query history.
    """

    account: str = Field(description="Account identifier, e.g. myorg-myacct (SNOWFLAKE_ACCOUNT).")
    user: str = Field(description="The loader's user (SNOWFLAKE_USER).")
    password: str | None = Field(
        default=None, description="Password (SNOWFLAKE_PASSWORD); or use a key pair."
    )
    private_key_path: str | None = Field(
        default=None, description="PEM private key for key-pair auth (SNOWFLAKE_PRIVATE_KEY_PATH)."
    )
    private_key_passphrase: str | None = Field(
        default=None,
        description="Passphrase of the private key, if any (SNOWFLAKE_PRIVATE_KEY_PASSPHRASE).",
    )
    role: str = Field(default=DEFAULT_ROLE, description="Role of load sessions (SNOWFLAKE_ROLE).")
    warehouse: str = Field(
        default=DEFAULT_WAREHOUSE, description="Virtual warehouse (SNOWFLAKE_WAREHOUSE)."
    )
    database: str = Field(default=DEFAULT_DATABASE, description="Database (SNOWFLAKE_DATABASE).")
    host: str | None = Field(
        default=None, description="Host override for PrivateLink or an emulator (SNOWFLAKE_HOST)."
    )
    port: int | None = Field(default=None, description="Port override (SNOWFLAKE_PORT).")
    protocol: str | None = Field(
        default=None, description="https (default) or http for an emulator (SNOWFLAKE_PROTOCOL)."
    )
    stage: str = Field(
        default=DEFAULT_STAGE,
        description="The external stage on the landing bucket (MOVIELENS_SNOWFLAKE_STAGE).",
    )
    stage_key_prefix: str = Field(
        default="landing/",
        description=(
            "The part of every S3 key the stage URL covers, e.g. 'landing/' for a stage on "
            "s3://bucket/landing/ (MOVIELENS_SNOWFLAKE_STAGE_PREFIX, default MOVIELENS_S3_PREFIX)."
        ),
    )
    file_format: str = Field(
        default=DEFAULT_FILE_FORMAT, description="The named CSV file format COPY uses."
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> SnowflakeWarehouse:
        """Configure from ``settings.snowflake``; secrets stay ``dg.EnvVar``s.

        Secrets are resolved by Dagster when a run starts, so they never appear in the
        resource's configuration or in metadata. Raises ``ConfigurationError`` naming the
        variables to set when the account, the user or the credentials are missing.
        """
        snowflake = settings.snowflake
        secrets = snowflake.connection_secrets()
        return cls(
            account=secrets["account"],
            user=secrets["user"],
            password=secrets.get("password"),
            private_key_path=secrets.get("private_key_path"),
            private_key_passphrase=secrets.get("private_key_passphrase"),
            # The loader's own least-privilege role; SNOWFLAKE_ROLE is dbt's (TRANSFORM).
            role=snowflake.loader_role or DEFAULT_ROLE,
            warehouse=snowflake.warehouse or DEFAULT_WAREHOUSE,
            database=snowflake.database or DEFAULT_DATABASE,
            host=snowflake.host,
            port=snowflake.port,
            protocol=snowflake.protocol,
            stage=snowflake.stage or DEFAULT_STAGE,
            stage_key_prefix=snowflake.stage_key_prefix,
            on_error_by_dataset=dict(settings.on_error),
        )

    @property
    def kind(self) -> str:
        """The asset kind of tables in this warehouse."""
        return "snowflake"

    def snowflake_resource(self, tag: str) -> SnowflakeResource:
        """dagster-snowflake's resource for one session tagged ``tag``.

        The tag is a session parameter sent at login, so it applies from the first statement
        and needs no SQL of its own.
        """
        extra: dict[str, Any] = {"session_parameters": {"QUERY_TAG": tag}}
        for name in ("host", "port", "protocol"):
            if getattr(self, name):
                extra[name] = getattr(self, name)
        # The field is `schema_`; the constructor knows it by its alias, `schema`.
        schema: dict[str, Any] = {"schema": RAW_SCHEMA}
        return SnowflakeResource(
            account=self.account,
            user=self.user,
            password=self.password,
            private_key_path=self.private_key_path,
            private_key_password=self.private_key_passphrase,
            role=self.role,
            warehouse=self.warehouse,
            database=self.database,
            **schema,
            paramstyle="qmark",
            additional_snowflake_connection_args=extra,
        )

    @contextmanager
    def session(self, tag: str) -> Iterator[Any]:
        """A cursor on a new tagged connection; the connection is closed afterwards."""
        with self.snowflake_resource(tag).get_connection() as connection:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def ensure_raw_tables(self) -> None:
        """Create the RAW tables, the ledger and the rejections where missing (as setup.sql)."""
        with self.session(query_tag(None, "raw", tool="dagster")) as cursor:
            for dataset in DATASETS.values():
                cursor.execute(raw_table_ddl(dataset))
            cursor.execute(LEDGER_DDL)
            cursor.execute(REJECTIONS_DDL)

    def stage_paths(self, dataset: Dataset, objects: Sequence[S3Object]) -> tuple[str, list[str]]:
        """The folder of the dataset inside the stage and each object's name relative to it."""
        prefix = self.stage_key_prefix
        folder = f"{dataset.name}/"
        names = []
        for obj in objects:
            if not obj.key.startswith(prefix + folder):
                raise LoadError(
                    f"{obj.key} is outside the stage folder {prefix}{folder} that the "
                    f"{self.stage} stage maps; check MOVIELENS_SNOWFLAKE_STAGE_PREFIX."
                )
            names.append(obj.key.removeprefix(prefix + folder))
        return folder, names

    def load_dataset(
        self,
        dataset: str,
        objects: Sequence[S3Object],
        s3: Any,
        bucket: str,
        run_id: str,
        log: logging.Logger | Any,
    ) -> SnowflakeLoadReport:
        """COPY the dataset's new objects, at most 1,000 files per statement and transaction.

        A bad file raises ``BadFileError`` (``on_error=abort``; nothing of its batch loads) or
        is reported in ``LoadReport.rejected`` (``skip_file``); either way it is recorded in
        ``RAW.LOAD_REJECTIONS``, and batches committed before it stay loaded (``loader.py``).
        """
        spec = DATASETS[dataset]
        on_error = self.on_error_for(dataset)
        with self.session(query_tag(run_id, f"raw/{spec.raw_table}")) as cursor:
            loader = CopyLoader(cursor, self.run_copy, run_id, log)
            return loader.load(spec, objects, s3, bucket, on_error)

    def run_copy(self, cursor: Any, job: CopyJob) -> list[CopyResult]:
        """Run the ``COPY INTO`` of one batch and return Snowflake's per-file results."""
        folder, names = self.stage_paths(job.dataset, job.objects)
        cursor.execute(
            copy_into_sql(
                job.dataset,
                self.stage,
                folder,
                names,
                job.loaded_at,
                key_prefix=self.stage_key_prefix,
                file_format=self.file_format,
                on_error=job.on_error,
            )
        )
        return copy_results(cursor)

    def read_connection(self) -> AbstractContextManager[Any]:
        """A cursor in a session tagged as ad-hoc queries."""
        return self.session(query_tag(None, None, tool="query"))

    def dbt_env(self, run_id: str | None = None) -> dict[str, str]:
        """The query tag of dbt's queries (``DBT_QUERY_TAG``), with the run id if given; read
        per node at run time by ``movielens_dbt/macros/set_query_tag.sql``, never by the profile.

        Credentials are not passed on: dbt's profile reads the same ``SNOWFLAKE_*`` variables
        from the environment, with its own role (``TRANSFORM``) when ``SNOWFLAKE_ROLE`` is unset.
        """
        return {"DBT_QUERY_TAG": query_tag(run_id, None, tool="dbt")}
