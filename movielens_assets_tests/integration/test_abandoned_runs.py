"""A `movielens run`-style in-process run whose process is SIGKILLed while it holds the
`duckdb_warehouse` pool slot: the next run marks it failed and frees the slot, instead of
waiting for it forever (nobody else watches an in-process run)."""

import os
import signal
import subprocess
import sys
import textwrap

import dagster as dg

from movielens_assets.settings import DUCKDB_POOL, Settings
from movielens_assets.tools.runner import fail_abandoned_runs, launcher_tags, prepare_instance

HOLDER = textwrap.dedent(
    """
    import sys, time
    import dagster as dg
    from movielens_assets.tools.runner import launcher_tags

    @dg.op(pool="{pool}")
    def hold_the_warehouse():
        print("holding", flush=True)
        time.sleep(600)

    @dg.job
    def holder():
        hold_the_warehouse()

    with dg.DagsterInstance.get() as instance:
        holder.execute_in_process(instance=instance, tags=launcher_tags())
    """
)


@dg.op(pool=DUCKDB_POOL)
def use_the_warehouse() -> str:
    return "done"


@dg.job
def user():
    use_the_warehouse()


def test_a_killed_in_process_run_is_failed_and_its_pool_slot_freed(tmp_path, monkeypatch):
    monkeypatch.setenv("MOVIELENS_HOME", str(tmp_path))
    prepare_instance(Settings.from_env())  # the local instance: the pool's limit is 1
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(pool=DUCKDB_POOL)],
        env={**os.environ, "DAGSTER_HOME": os.environ["DAGSTER_HOME"]},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"  # the op runs: the slot is taken
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with dg.DagsterInstance.get() as instance:
        [stuck] = instance.get_runs(filters=dg.RunsFilter(job_name="holder"))
        assert stuck.status == dg.DagsterRunStatus.STARTED
        pool = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL)
        assert (pool.slot_count, pool.active_run_ids) == (1, {stuck.run_id})
        assert fail_abandoned_runs(instance) == [stuck.run_id]
        assert instance.get_run_by_id(stuck.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).active_run_ids == set()
        result = user.execute_in_process(instance=instance, tags=launcher_tags())
        assert result.success and result.output_for_node("use_the_warehouse") == "done"
        assert fail_abandoned_runs(instance) == []  # a finished run is left alone
