"""``movielens init-pools``: give each of the project's pools a limit of its own.

Dagster creates a pool's limit from ``concurrency.pools.default_limit`` lazily, when a step
first asks for a slot. On a PostgreSQL instance that fails the step when another run created
the pool since this run last read the pools: the duplicate insert aborts the transaction,
which Dagster catches and then uses (dagster-io/dagster#33552, open; still so in 1.13.27). Two
runs starting together on a new instance is enough. A pool with a limit of its own is never
created lazily, so the deployment runs this once after ``dagster instance migrate`` (the
compose file's ``migrate`` service does).

Each pool gets ``default_limit`` unless it has a limit of its own already (set by an earlier
run of this command, ``dagster instance concurrency set`` or the UI), which is kept: running it
again on every deploy is safe.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import dagster as dg

from movielens_assets.lib.dagster_internals import (
    default_pool_limit,
    has_pool_tables,
    own_pool_limits,
    set_pool_limit,
)
from movielens_assets.settings import DUCKDB_POOL, SNOWFLAKE_DBT_POOL, SNOWFLAKE_RAW_POOL

PROJECT_POOLS = (DUCKDB_POOL, SNOWFLAKE_RAW_POOL, SNOWFLAKE_DBT_POOL)
"""Every pool of every target (``Settings.pools``): the instance does not know the target."""


class PoolsUnavailableError(RuntimeError):
    """The instance cannot hold pool limits."""


def init_pools(instance: dg.DagsterInstance, pools: Sequence[str] = PROJECT_POOLS) -> list[str]:
    """Give each pool without a limit of its own the instance's ``default_limit``; one line per
    pool saying what it has now."""
    if not has_pool_tables(instance):
        raise PoolsUnavailableError(
            "this instance's storage has no pool tables: run `dagster instance migrate` first, "
            "or point DAGSTER_HOME at the production instance (PostgreSQL storage)"
        )
    default = default_pool_limit(instance)
    if default is None:
        return ["no concurrency.pools.default_limit in dagster.yaml: pools are unlimited"]
    own = own_pool_limits(instance)
    lines = []
    for name in pools:
        if name in own:
            lines.append(f"{name}: limit {own[name]}, its own already (kept)")
            continue
        set_pool_limit(instance, name, default)
        lines.append(f"{name}: limit {default} (default_limit), now its own")
    return lines


def unloadable_instance(error: dg.DagsterInvalidConfigError) -> str:
    """One line for a ``dagster.yaml`` that does not load: the unset variables it reads, by
    name, or else Dagster's own messages."""
    where = os.path.join(os.environ["DAGSTER_HOME"], "dagster.yaml")
    messages = [problem.message for problem in error.errors]
    unset = [
        match.group(1)
        for message in messages
        if (match := re.search(r'environment variable "([^"]+)" which is not set', message))
    ]
    if unset and len(unset) == len(messages):
        one = len(unset) == 1
        return (
            f"{where} reads {', '.join(sorted(unset))}, which {'is' if one else 'are'} not "
            f"set: set {'it' if one else 'each'} (see .env.example)"
        )
    return f"{where} does not load: " + "; ".join(messages)


def run_init_pools() -> tuple[int, list[str]]:
    """The command's exit status and its lines of output."""
    if not os.environ.get("DAGSTER_HOME"):
        return 1, [
            "movielens init-pools: DAGSTER_HOME is not set: point it at the folder of the "
            "production instance's dagster.yaml (deploy/dagster.yaml)"
        ]
    try:
        with dg.DagsterInstance.get() as instance:
            lines = init_pools(instance)
    except dg.DagsterInvalidConfigError as error:
        return 1, [f"movielens init-pools: {unloadable_instance(error)}"]
    except PoolsUnavailableError as error:
        return 1, [f"movielens init-pools: {error}"]
    return 0, [f"movielens init-pools: {line}" for line in lines]
