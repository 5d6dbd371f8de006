"""``movielens check-instance``: can the production Dagster instance reach its PostgreSQL?

Run it before ``dagster instance migrate`` and the long-running processes (the compose file's
``migrate`` service does): a missing ``DAGSTER_PG_*`` variable, a server that is not reachable,
a wrong password or a missing database each get one line saying what to set or start. The
password is never printed, not even inside the server's own message.
"""

from __future__ import annotations

from dataclasses import dataclass

from movielens_assets.settings import ConfigurationError, PostgresSettings

CONNECT_TIMEOUT_SECONDS = 5


class InstanceUnreachableError(RuntimeError):
    """The instance's PostgreSQL cannot be used with the configured connection."""


@dataclass(frozen=True)
class InstanceStatus:
    """What a successful check found."""

    server_version: str
    has_dagster_schema: bool


def _without(secret: str, text: str) -> str:
    return text.replace(secret, "***") if secret else text


def explain(error: Exception, pg: PostgresSettings) -> str:
    """One message for a failed connection: what is wrong and which variable or server to fix."""
    detail = _without(pg.password, str(error).strip().splitlines()[0] if str(error) else "")
    where = f"{pg.host}:{pg.port}"
    lowered = detail.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return (
            f"PostgreSQL at {where} rejected the password of user {pg.user!r} "
            "(DAGSTER_PG_USER): set DAGSTER_PG_PASSWORD to that user's password."
        )
    if "does not exist" in lowered and "database" in lowered:
        return (
            f"PostgreSQL at {where} has no database {pg.db!r} (DAGSTER_PG_DB): create it "
            f"(createdb -h {pg.host} -p {pg.port} -U {pg.user} {pg.db}) or set DAGSTER_PG_DB."
        )
    if "role" in lowered and "does not exist" in lowered:
        return (
            f"PostgreSQL at {where} has no user {pg.user!r}: set DAGSTER_PG_USER to an existing "
            "role, or create it."
        )
    return (
        f"PostgreSQL is not reachable at {where} (DAGSTER_PG_HOST, DAGSTER_PG_PORT): start it, "
        f"or point those variables at the running server. The driver said: {detail}"
    )


def check_instance(pg: PostgresSettings) -> InstanceStatus:
    """Connect as the instance will and report the server version and whether Dagster's tables
    exist (``dagster instance migrate`` creates or upgrades them)."""
    import psycopg2

    try:
        connection = psycopg2.connect(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            dbname=pg.db,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        )
    except psycopg2.Error as error:
        raise InstanceUnreachableError(explain(error, pg)) from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("show server_version")
            version = cursor.fetchone()[0]
            cursor.execute("select to_regclass('public.alembic_version') is not null")
            has_schema = bool(cursor.fetchone()[0])
    finally:
        connection.close()
    return InstanceStatus(server_version=version, has_dagster_schema=has_schema)


def run_check() -> tuple[int, str]:
    """The command's exit status and its one line of output."""
    try:
        pg = PostgresSettings.from_env()
        status = check_instance(pg)
    except (ConfigurationError, InstanceUnreachableError) as error:
        return 1, f"movielens check-instance: {error}"
    schema = (
        "Dagster's tables exist (run `dagster instance migrate` after upgrading Dagster)"
        if status.has_dagster_schema
        else "no Dagster tables yet: run `dagster instance migrate` to create them"
    )
    return 0, (
        f"movielens check-instance: PostgreSQL {status.server_version} at {pg.host}:{pg.port}, "
        f"database {pg.db!r} as {pg.user!r}: {schema}."
    )
