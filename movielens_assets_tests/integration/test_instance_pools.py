"""`movielens init-pools` on a real PostgreSQL instance (``deploy/dagster.yaml`` as it is).

The first test shows the Dagster bug the command works around (dagster-io/dagster#33552): a run
that read the pools before another run created one fails when it asks that pool for a slot. It
drives Dagster's step-side slot claims (``InstanceConcurrencyContext``, what a run's executor
uses) directly, one context per run, so the interleaving is exact rather than timed. Nothing is
mocked. Expected limits come from ``deploy/dagster.yaml`` read with PyYAML.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.execution.plan.instance_concurrency_context import (
    InstanceConcurrencyContext,
)
from dagster._core.test_utils import create_run_for_test

from movielens_assets.settings import Settings
from movielens_assets.tools.instance_pools import PROJECT_POOLS
from movielens_assets_tests.conftest import REPO
from movielens_assets_tests.postgres_cluster import Cluster, throwaway_cluster

BIN = Path(sys.executable).parent
DEFAULT_LIMIT = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["concurrency"][
    "pools"
]["default_limit"]
POOL = "snowflake_dbt_builds"


@dataclass(frozen=True)
class Instance:
    """A migrated production instance: its PostgreSQL and the environment that points at it."""

    cluster: Cluster
    env: dict[str, str]


@pytest.fixture
def instance(tmp_path, monkeypatch) -> Iterator[Instance]:
    """A fresh cluster, ``deploy/dagster.yaml`` in a new DAGSTER_HOME, ``dagster instance
    migrate`` run; this process's DagsterInstance.get() opens it too."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with throwaway_cluster() as cluster:
        own = {**cluster.env(), "DAGSTER_HOME": str(home)}
        for name, value in own.items():
            monkeypatch.setenv(name, value)
        running = Instance(cluster, {**os.environ, **own})
        dagster(running, "instance", "migrate")
        yield running


def dagster(instance: Instance, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "dagster"), *args], env=instance.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def init_pools(instance: Instance) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "movielens"), "init-pools"],
        env=instance.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def limits(cluster: Cluster) -> dict[str, tuple[int, bool, int]]:
    """Each pool's limit, whether it is the default one, and its slot rows (SQL, not Dagster)."""
    with contextlib.closing(cluster.connect()) as connection, connection.cursor() as cursor:
        cursor.execute(
            'select l.concurrency_key, l."limit", l.using_default_limit, count(s.id)'
            " from concurrency_limits l left join concurrency_slots s"
            " on s.concurrency_key = l.concurrency_key and not s.deleted group by 1, 2, 3"
        )
        return {key: (limit, bool(default), slots) for key, limit, default, slots in cursor}


@contextlib.contextmanager
def run_claims(instance: dg.DagsterInstance, name: str) -> Iterator[InstanceConcurrencyContext]:
    """One run's slot claims, released at the end as the run's executor releases them."""
    run = create_run_for_test(instance, job_name=name)
    with InstanceConcurrencyContext(instance, run) as claims:
        yield claims
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


def stale_claim() -> BaseException | bool:
    """Run A reads the pools, run B then takes ``POOL``'s slot, then A asks for one: A's answer
    (False: blocked, True: claimed) or what it raised."""
    with (
        dg.DagsterInstance.get() as instance_a,
        dg.DagsterInstance.get() as instance_b,
        run_claims(instance_a, "a") as a,
    ):
        a.get_pool_info("snowflake_raw_loads")  # A's first step asks: A reads the pools
        with run_claims(instance_b, "b") as b:
            assert b.claim(POOL, "build_b") is True
            try:
                return a.claim(POOL, "build_a")
            except Exception as error:  # noqa: BLE001 (what A's step would fail with)
                return error


def test_without_own_limits_a_run_that_read_the_pools_earlier_fails_its_claim(instance):
    outcome = stale_claim()
    assert isinstance(outcome, Exception), outcome
    assert "current transaction is aborted" in str(outcome)  # the caught duplicate insert


def test_after_init_pools_the_same_claim_waits_for_the_slot(instance):
    assert init_pools(instance).returncode == 0
    assert stale_claim() is False  # blocked behind B's slot, as a limit of 1 should


def test_init_pools_gives_each_pool_its_limit_and_keeps_one_raised_since(instance):
    first = init_pools(instance)
    assert first.returncode == 0, first.stderr
    expected = {pool: (DEFAULT_LIMIT, False, DEFAULT_LIMIT) for pool in PROJECT_POOLS}
    assert limits(instance.cluster) == expected
    assert f"{POOL}: limit {DEFAULT_LIMIT} (default_limit), now its own" in first.stdout

    dagster(instance, "instance", "concurrency", "set", POOL, "3")
    again = init_pools(instance)
    assert again.returncode == 0, again.stderr
    assert limits(instance.cluster) == {**expected, POOL: (3, False, 3)}
    assert f"{POOL}: limit 3, its own already (kept)" in again.stdout


def test_a_pool_a_run_created_from_the_default_becomes_its_own(instance):
    with dg.DagsterInstance.get() as opened, run_claims(opened, "early") as early:
        assert early.claim(POOL, "build") is True  # created lazily from default_limit
    assert limits(instance.cluster)[POOL] == (DEFAULT_LIMIT, True, DEFAULT_LIMIT)
    assert init_pools(instance).returncode == 0
    assert limits(instance.cluster)[POOL] == (DEFAULT_LIMIT, False, DEFAULT_LIMIT)


def test_the_project_pools_are_every_pool_of_every_target():
    used = set()
    for target in ("local", "prod"):
        pools = Settings.from_env({"MOVIELENS_TARGET": target}).pools
        used |= {pools.raw, pools.checks, pools.dbt} - {None}
    assert used == set(PROJECT_POOLS)


def unconfigured_init_pools(**env: str) -> subprocess.CompletedProcess:
    """``movielens init-pools`` with no ``DAGSTER_PG_*`` set and ``env`` added."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DAGSTER_PG_") and k != "DAGSTER_HOME"
    }
    return subprocess.run(
        [str(BIN / "movielens"), "init-pools"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unset_variable_of_the_instance_is_named_in_one_line(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    others = {"DAGSTER_PG_PASSWORD": "secret", "DAGSTER_PG_HOST": "db", "DAGSTER_PG_DB": "dagster"}
    result = unconfigured_init_pools(DAGSTER_HOME=str(home), DAGSTER_PG_PORT="5432", **others)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"movielens init-pools: {home / 'dagster.yaml'} reads DAGSTER_PG_USER, which is not set: "
        "set it (see .env.example)"
    ]
    everything = unconfigured_init_pools(DAGSTER_HOME=str(home))
    assert everything.returncode == 1
    assert (
        "reads DAGSTER_PG_DB, DAGSTER_PG_HOST, DAGSTER_PG_PASSWORD, DAGSTER_PG_PORT, "
        "DAGSTER_PG_USER, which are not set: set each" in everything.stderr
    )
    assert "Traceback" not in result.stderr + everything.stderr


def test_an_unset_dagster_home_is_named():
    result = unconfigured_init_pools()
    assert result.returncode == 1
    assert "DAGSTER_HOME is not set" in result.stderr
    assert "Traceback" not in result.stderr
