"""Configuration from the environment, decided in one place.

Every setting has a documented default, so a fresh clone runs with no configuration at all
(see README "Configuration"). AWS settings keep the names boto3 reads itself
(``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ...); Snowflake settings keep the names the
Snowflake tools use (``SNOWFLAKE_ACCOUNT``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from movielens_assets.datasets import DATASETS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the package is installed in editable mode by ``make``)."""

TARGETS = ("local", "prod")
DEFAULT_SENSOR_INTERVAL = 30
DEFAULT_LISTING_BUDGET = 10_000
"""Objects the landing sensor lists per tick without a queue (about 3.5 s on loopback)."""
DEFAULT_LISTING_BUDGET_WITH_QUEUE = 1_000
"""Objects listed per tick when notifications arrive through SQS: the listing is a safety net."""
DEFAULT_HORIZON_SECONDS = 3_600


SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
)
"""Environment variables holding secrets: ``lib/redact.py`` masks their values anywhere."""


def secret_environment_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of ``SECRET_VARIABLES`` set now in ``environ`` (default: this process's).

    Read at each call, not once: redaction must mask whatever secret the process holds when
    it writes a log line or an error.
    """
    env = os.environ if environ is None else environ
    return [env[name] for name in SECRET_VARIABLES if env.get(name)]


class ConfigurationError(ValueError):
    """An environment variable holds a value the project cannot use."""


ON_ERROR_MODES = ("abort", "skip_file")
"""What a load does with a bad file: ``abort`` fails the load (Snowflake's ``ABORT_STATEMENT``),
``skip_file`` reports the file and loads the others (``SKIP_FILE``)."""
ON_ERROR_ENV = "MOVIELENS_ON_ERROR"
"""The variable setting ``on_error`` for every dataset; ``MOVIELENS_ON_ERROR_<DATASET>``
overrides it for one (e.g. ``MOVIELENS_ON_ERROR_RATINGS=skip_file``)."""


def normalize_on_error(value: str, source: str = "on_error") -> str:
    """``abort`` or ``skip_file`` for a configured value (Snowflake's spellings are accepted).

    Raises ``ConfigurationError`` naming ``source`` (the variable or field) for anything else.
    """
    mode = value.strip().lower()
    mode = {"abort_statement": "abort"}.get(mode, mode)
    if mode not in ON_ERROR_MODES:
        raise ConfigurationError(
            f"{source}={value!r} is not one of {', '.join(ON_ERROR_MODES)}: 'abort' fails the "
            "load at the first bad file, 'skip_file' reports it and loads the other files."
        )
    return mode


def _on_error(env: Mapping[str, str]) -> dict[str, str]:
    """Each dataset's ``on_error``: ``MOVIELENS_ON_ERROR_<DATASET>``, else ``MOVIELENS_ON_ERROR``.

    Unset means ``abort``. A per-dataset variable naming no dataset is refused, so that a typo
    does not silently leave a dataset on the default.
    """
    default = normalize_on_error(env.get(ON_ERROR_ENV) or "abort", ON_ERROR_ENV)
    modes = dict.fromkeys(DATASETS, default)
    for name, value in env.items():
        if not name.startswith(ON_ERROR_ENV + "_") or not value:
            continue
        dataset = name.removeprefix(ON_ERROR_ENV + "_").lower()
        if dataset not in DATASETS:
            raise ConfigurationError(
                f"{name} names no dataset; use {ON_ERROR_ENV}_<DATASET> with one of "
                f"{', '.join(known.upper() for known in DATASETS)}."
            )
        modes[dataset] = normalize_on_error(value, name)
    return modes


SNOWFLAKE_SECRETS = (
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_USER",
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_PRIVATE_KEY_PATH",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
)
"""The variables the loader takes as ``dg.EnvVar``: Dagster resolves them when a run starts, so
their values never enter the settings, the resource's configuration or metadata."""


@dataclass(frozen=True)
class SnowflakeSettings:
    """The RAW loader's Snowflake connection (``MOVIELENS_TARGET=prod``).

    The variables keep the names Snowflake's own tools read. ``None`` leaves the resource's
    default, the objects ``snowflake/setup.sql`` creates.
    """

    secrets_set: frozenset[str] = frozenset()
    """Which of ``SNOWFLAKE_SECRETS`` are set; only that is kept, never their values."""
    loader_role: str | None = None
    """``MOVIELENS_SNOWFLAKE_LOADER_ROLE``: the loader's own least-privilege role (default
    ``LOADER``); ``SNOWFLAKE_ROLE`` is dbt's (``TRANSFORM``)."""
    warehouse: str | None = None
    """``SNOWFLAKE_WAREHOUSE``: the virtual warehouse (default ``MOVIELENS_WH``)."""
    database: str | None = None
    """``SNOWFLAKE_DATABASE`` (default ``MOVIELENS``)."""
    host: str | None = None
    """``SNOWFLAKE_HOST``: a host override for PrivateLink or an emulator."""
    port: int | None = None
    """``SNOWFLAKE_PORT``: a port override."""
    protocol: str | None = None
    """``SNOWFLAKE_PROTOCOL``: ``https`` (default) or ``http`` for an emulator."""
    stage: str | None = None
    """``MOVIELENS_SNOWFLAKE_STAGE``: the external stage on the landing bucket (default
    ``RAW.MOVIELENS_LANDING``)."""
    stage_key_prefix: str = "landing/"
    """``MOVIELENS_SNOWFLAKE_STAGE_PREFIX``: the part of every S3 key the stage URL covers;
    default ``MOVIELENS_S3_PREFIX`` and a slash (empty for a stage on the bucket's root)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> SnowflakeSettings:
        """Read the Snowflake variables; ``prefix`` is the landing prefix (``Settings.prefix``)."""
        port = env.get("SNOWFLAKE_PORT")
        if port and not port.isdigit():
            raise ConfigurationError(f"SNOWFLAKE_PORT={port!r} must be a port number, e.g. 443.")
        stage_prefix = env.get("MOVIELENS_SNOWFLAKE_STAGE_PREFIX", f"{prefix}/" if prefix else "")
        return cls(
            secrets_set=frozenset(name for name in SNOWFLAKE_SECRETS if env.get(name)),
            loader_role=env.get("MOVIELENS_SNOWFLAKE_LOADER_ROLE") or None,
            warehouse=env.get("SNOWFLAKE_WAREHOUSE") or None,
            database=env.get("SNOWFLAKE_DATABASE") or None,
            host=env.get("SNOWFLAKE_HOST") or None,
            port=int(port) if port else None,
            protocol=env.get("SNOWFLAKE_PROTOCOL") or None,
            stage=env.get("MOVIELENS_SNOWFLAKE_STAGE") or None,
            stage_key_prefix=stage_prefix.lstrip("/"),
        )

    def connection_secrets(self) -> dict[str, dg.EnvVar]:
        """``account``, ``user`` and one way to authenticate, as ``dg.EnvVar``s.

        Raises ``ConfigurationError`` naming the variables to set when any is missing, or when
        both a password and a key pair are set.
        """
        is_set = self.secrets_set.__contains__
        missing = [name for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER") if not is_set(name)]
        if missing:
            raise ConfigurationError(
                f"MOVIELENS_TARGET=prod needs {' and '.join(missing)}; see .env.example."
            )
        if is_set("SNOWFLAKE_PASSWORD") and is_set("SNOWFLAKE_PRIVATE_KEY_PATH"):
            raise ConfigurationError(
                "Set SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH, not both."
            )
        secrets = {
            "account": dg.EnvVar("SNOWFLAKE_ACCOUNT"),
            "user": dg.EnvVar("SNOWFLAKE_USER"),
        }
        if is_set("SNOWFLAKE_PRIVATE_KEY_PATH"):
            secrets["private_key_path"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PATH")
            if is_set("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
                secrets["private_key_passphrase"] = dg.EnvVar("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE")
        elif is_set("SNOWFLAKE_PASSWORD"):
            secrets["password"] = dg.EnvVar("SNOWFLAKE_PASSWORD")
        else:
            raise ConfigurationError(
                "MOVIELENS_TARGET=prod needs SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH."
            )
        return secrets


@dataclass(frozen=True)
class WarehousePools:
    """The Dagster concurrency pool of each kind of step that touches the warehouse.

    A pool's limit is instance state (``concurrency.pools.default_limit`` in ``dagster.yaml``,
    ``dagster instance concurrency set <pool> <limit>`` or the UI); ``None`` means no pool.
    """

    raw: str | None
    """The RAW load (``raw_tables``)."""
    checks: str | None
    """The RAW checks and the source freshness check (they read the warehouse)."""
    dbt: str | None
    """The dbt build (``movielens_dbt_models``)."""


DUCKDB_POOL = "duckdb_warehouse"
"""DuckDB admits one writer process (and no reader beside it): every step that opens the file
shares this pool, whose limit must stay 1."""
SNOWFLAKE_RAW_POOL = "snowflake_raw_loads"
"""Concurrent RAW loads on Snowflake (COPY skips files already loaded; the ledger's key guards)."""
SNOWFLAKE_DBT_POOL = "snowflake_dbt_builds"
"""Concurrent dbt builds on Snowflake."""


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


SQS_MAX_WAIT_SECONDS = 20
"""SQS's longest long poll."""


def _sqs_wait_seconds(env: Mapping[str, str]) -> int | None:
    """``MOVIELENS_SQS_WAIT_SECONDS``: 0 to 20; None when unset."""
    if not (env.get("MOVIELENS_SQS_WAIT_SECONDS") or "").strip():
        return None
    seconds = _whole_number(env, "MOVIELENS_SQS_WAIT_SECONDS", 0, minimum=0)
    if seconds > SQS_MAX_WAIT_SECONDS:
        raise ConfigurationError(
            f"MOVIELENS_SQS_WAIT_SECONDS={seconds} is more than SQS allows "
            f"({SQS_MAX_WAIT_SECONDS}); set 0 to {SQS_MAX_WAIT_SECONDS}."
        )
    return seconds


def _whole_number(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """A whole-number setting ``name`` (at least ``minimum``), ``default`` when unset."""
    value = (env.get(name) or "").strip().replace("_", "")
    if not value:
        return default
    if not value.isdigit() or int(value) < minimum:
        raise ConfigurationError(
            f"{name}={env.get(name)!r} is not a whole number >= {minimum}; "
            f"unset it for the default ({default})."
        )
    return int(value)


def _queue_url(env: Mapping[str, str]) -> str | None:
    """``MOVIELENS_SQS_QUEUE_URL``: the SQS queue S3 notifies of landed files, if any."""
    value = (env.get("MOVIELENS_SQS_QUEUE_URL") or "").strip()
    if not value:
        return None
    if not value.startswith(("https://", "http://")):
        raise ConfigurationError(
            f"MOVIELENS_SQS_QUEUE_URL={value!r} is not a queue URL; set it to the URL SQS "
            "shows for the queue (https://sqs.<region>.amazonaws.com/<account>/<name>) or "
            "unset it to find landed files by listing only."
        )
    return value


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
    dbt_target_path: Path | None = None
    """``DBT_TARGET_PATH``: dbt's own variable for its target folder, if set."""
    sqs_queue_url: str | None = None
    """``MOVIELENS_SQS_QUEUE_URL``: the SQS queue receiving the landing bucket's
    ``s3:ObjectCreated:*`` notifications; unset: the sensor finds new files by listing only."""
    sqs_wait_seconds: int | None = None
    """``MOVIELENS_SQS_WAIT_SECONDS`` (0 to 20): how long a tick waits on the queue for a first
    message (SQS long polling); a notification arriving meanwhile starts its run at once instead
    of at the next tick. Keep it well below the sensor interval. Unset: 0, but ``movielens dev``
    sets 20 with the default 30 s interval (``tools/notifications.py``)."""
    sensor_listing_budget: int = DEFAULT_LISTING_BUDGET
    """``MOVIELENS_SENSOR_LISTING_BUDGET``: objects the sensor lists per tick at most (default
    10,000, or 1,000 with a queue); a bigger bucket is listed over several ticks."""
    sensor_horizon_seconds: int = DEFAULT_HORIZON_SECONDS
    """``MOVIELENS_SENSOR_HORIZON_SECONDS``: an object modified this long before a completed
    listing pass began counts as handled and leaves the cursor (default 3600). Keep it above
    your longest upload: a multipart object's LastModified is when its upload started."""
    data_dir: Path | None = None
    """``MOVIELENS_DATA_DIR``: the local folder the landing assets upload; unset means the
    prepared sample (``sample_dir``)."""
    on_error: dict[str, str] = field(default_factory=lambda: dict.fromkeys(DATASETS, "abort"))
    """``MOVIELENS_ON_ERROR`` and ``MOVIELENS_ON_ERROR_<DATASET>``: per dataset, what a load
    does with a bad file (``abort`` or ``skip_file``; see ``ON_ERROR_MODES``)."""
    snowflake: SnowflakeSettings = field(default_factory=SnowflakeSettings)
    """The Snowflake loader's connection (used with ``MOVIELENS_TARGET=prod``)."""

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
        prefix = (env.get("MOVIELENS_S3_PREFIX") or "landing").strip("/")
        queue_url = _queue_url(env)
        return cls(
            home=home.expanduser().resolve(),
            target=target,
            bucket=env.get("MOVIELENS_S3_BUCKET") or "movielens",
            prefix=prefix,
            s3_endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            dbt_docs_url=env.get("MOVIELENS_DBT_DOCS_URL") or "http://127.0.0.1:8080",
            sensor_interval=_sensor_interval(env),
            sensor_running=_sensor_running(env, target),
            dbt_target_path=Path(env["DBT_TARGET_PATH"]) if env.get("DBT_TARGET_PATH") else None,
            sqs_queue_url=queue_url,
            sqs_wait_seconds=_sqs_wait_seconds(env),
            sensor_listing_budget=_whole_number(
                env,
                "MOVIELENS_SENSOR_LISTING_BUDGET",
                DEFAULT_LISTING_BUDGET_WITH_QUEUE if queue_url else DEFAULT_LISTING_BUDGET,
                minimum=1,
            ),
            sensor_horizon_seconds=_whole_number(
                env, "MOVIELENS_SENSOR_HORIZON_SECONDS", DEFAULT_HORIZON_SECONDS, minimum=0
            ),
            data_dir=Path(env["MOVIELENS_DATA_DIR"]).expanduser().resolve()
            if env.get("MOVIELENS_DATA_DIR")
            else None,
            on_error=_on_error(env),
            snowflake=SnowflakeSettings.from_env(env, prefix),
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
        """dbt's target folders: one per dbt call (dagster-dbt) and the kept parse state;
        ``DBT_TARGET_PATH`` (dbt's own variable) when set, else ``dbt-target`` in the home."""
        return self.dbt_target_path or self.home / "dbt-target"

    @property
    def local_s3_dir(self) -> Path:
        """Where the loopback S3 server keeps its objects between restarts."""
        return self.home / "s3"

    @property
    def sample_dir(self) -> Path:
        """The bundled sample with its synthetic tag genome, prepared by ``movielens sample``."""
        return self.home / "sample" / "ml-latest-small"

    @property
    def pools(self) -> WarehousePools:
        """Which pool guards which step on this target: one pool for every step that opens the
        DuckDB file; on Snowflake, RAW loads and dbt builds each in their own pool (limits set in
        the instance), checks unpooled (they only read)."""
        if self.target == "prod":
            return WarehousePools(raw=SNOWFLAKE_RAW_POOL, checks=None, dbt=SNOWFLAKE_DBT_POOL)
        return WarehousePools(raw=DUCKDB_POOL, checks=DUCKDB_POOL, dbt=DUCKDB_POOL)

    @property
    def warehouse_kind(self) -> str:
        """The warehouse engine of this target, shown as the RAW assets' kind."""
        return "snowflake" if self.target == "prod" else "duckdb"


POSTGRES_VARIABLES = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
)
"""The production instance's connection (``deploy/dagster.yaml`` reads the same names)."""


@dataclass(frozen=True)
class PostgresSettings:
    """Where the production Dagster instance keeps runs, events and sensor state."""

    host: str
    """``DAGSTER_PG_HOST``."""
    port: int
    """``DAGSTER_PG_PORT``."""
    user: str
    """``DAGSTER_PG_USER``."""
    password: str
    """``DAGSTER_PG_PASSWORD``: never printed."""
    db: str
    """``DAGSTER_PG_DB``."""

    def __repr__(self) -> str:
        return (
            f"PostgresSettings(host={self.host!r}, port={self.port}, user={self.user!r}, "
            f"password='***', db={self.db!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PostgresSettings:
        """Read ``DAGSTER_PG_*``; every one is required (no default could be right)."""
        env = os.environ if environ is None else environ
        missing = [name for name in POSTGRES_VARIABLES if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: the "
                "production instance (deploy/dagster.yaml) connects to PostgreSQL with "
                f"{', '.join(POSTGRES_VARIABLES)}. Set every one (see .env.example)."
            )
        port = env["DAGSTER_PG_PORT"].strip()
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"DAGSTER_PG_PORT={port!r} is not a TCP port; PostgreSQL's default is 5432."
            )
        return cls(
            host=env["DAGSTER_PG_HOST"].strip(),
            port=int(port),
            user=env["DAGSTER_PG_USER"].strip(),
            password=env["DAGSTER_PG_PASSWORD"],
            db=env["DAGSTER_PG_DB"].strip(),
        )
