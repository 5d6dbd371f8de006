"""Configuration from the environment, decided in one place.

Every setting has a documented default, so a fresh clone runs with no configuration at all
(see README "Configuration"). AWS settings keep the names boto3 reads itself
(``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ...); Snowflake settings keep the names the
Snowflake tools use (``SNOWFLAKE_ACCOUNT``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the package is installed in editable mode by ``make``)."""

TARGETS = ("local", "prod")
DEFAULT_SENSOR_INTERVAL = 30


class ConfigurationError(ValueError):
    """An environment variable holds a value the project cannot use."""


def _sensor_interval(env: Mapping[str, str]) -> int:
    """Seconds between sensor ticks: ``MOVIELENS_SENSOR_INTERVAL``, default 30."""
    value = (env.get("MOVIELENS_SENSOR_INTERVAL") or "").strip()
    if not value:
        return DEFAULT_SENSOR_INTERVAL
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(
            f"MOVIELENS_SENSOR_INTERVAL={value!r} is not a whole number of seconds >= 1; "
            f"unset it for the default ({DEFAULT_SENSOR_INTERVAL})."
        )
    return int(value)


def _sensor_running(env: Mapping[str, str], target: str) -> bool:
    """Whether the sensor starts RUNNING: yes on the embedded default, no against real AWS.

    ``MOVIELENS_SENSOR_DEFAULT=running|stopped`` overrides the choice made from the target.
    """
    value = (env.get("MOVIELENS_SENSOR_DEFAULT") or "").strip().lower()
    if not value:
        return target != "prod"
    if value not in ("running", "stopped"):
        raise ConfigurationError(
            f"MOVIELENS_SENSOR_DEFAULT={value!r} is not 'running' or 'stopped'; unset it to "
            "start the sensor by default locally and leave it stopped against AWS."
        )
    return value == "running"


@dataclass(frozen=True)
class Settings:
    """Where state lives and which S3 and warehouse the pipeline talks to."""

    home: Path
    """``MOVIELENS_HOME``: local state (DuckDB file, Dagster home, local S3 data)."""
    target: str
    """``MOVIELENS_TARGET``: ``local`` (loopback S3 + DuckDB) or ``prod`` (S3 + Snowflake)."""
    bucket: str
    """``MOVIELENS_S3_BUCKET``: the landing bucket."""
    prefix: str
    """``MOVIELENS_S3_PREFIX``: the folder holding one sub-folder per dataset."""
    s3_endpoint: str | None
    """``AWS_ENDPOINT_URL_S3``: an S3-compatible endpoint; unset means AWS (prod) or the
    project's own loopback server (local)."""
    dbt_docs_url: str = "http://127.0.0.1:8080"
    """``MOVIELENS_DBT_DOCS_URL``: where ``movielens docs`` serves the dbt docs (asset links)."""
    sensor_interval: int = DEFAULT_SENSOR_INTERVAL
    """``MOVIELENS_SENSOR_INTERVAL``: seconds between the landing sensor's ticks."""
    sensor_running: bool = True
    """``MOVIELENS_SENSOR_DEFAULT`` (``running``/``stopped``): the sensor's default status;
    unset: running on the embedded default, stopped with ``MOVIELENS_TARGET=prod``."""
    data_dir: Path | None = None
    """``MOVIELENS_DATA_DIR``: the local folder the landing assets upload; unset means the
    prepared sample (``sample_dir``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default: the process environment)."""
        env = os.environ if environ is None else environ
        target = env.get("MOVIELENS_TARGET", "local").strip().lower() or "local"
        if target not in TARGETS:
            raise ConfigurationError(
                f"MOVIELENS_TARGET={target!r} is not one of {', '.join(TARGETS)}; "
                "unset it for the embedded default or set it to 'prod' for S3 + Snowflake."
            )
        home = Path(env.get("MOVIELENS_HOME") or PROJECT_ROOT / ".movielens")
        return cls(
            home=home.expanduser().resolve(),
            target=target,
            bucket=env.get("MOVIELENS_S3_BUCKET") or "movielens",
            prefix=(env.get("MOVIELENS_S3_PREFIX") or "landing").strip("/"),
            s3_endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            dbt_docs_url=env.get("MOVIELENS_DBT_DOCS_URL") or "http://127.0.0.1:8080",
            sensor_interval=_sensor_interval(env),
            sensor_running=_sensor_running(env, target),
            data_dir=Path(env["MOVIELENS_DATA_DIR"]).expanduser().resolve()
            if env.get("MOVIELENS_DATA_DIR")
            else None,
        )

    @property
    def duckdb_path(self) -> Path:
        """The embedded warehouse. Its stem must stay ``warehouse``: dbt records it as the
        catalog name at parse time."""
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        """``DAGSTER_HOME`` for runs started by the ``movielens`` command."""
        return self.home / "dagster"

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target folders: one per dbt call (dagster-dbt) and the kept parse state."""
        return self.home / "dbt-target"

    @property
    def local_s3_dir(self) -> Path:
        """Where the loopback S3 server keeps its objects between restarts."""
        return self.home / "s3"

    @property
    def sample_dir(self) -> Path:
        """The bundled sample with its synthetic tag genome, prepared by ``movielens sample``."""
        return self.home / "sample" / "ml-latest-small"

    @property
    def warehouse_kind(self) -> str:
        """The warehouse engine of this target, shown as the RAW assets' kind."""
        return "snowflake" if self.target == "prod" else "duckdb"
