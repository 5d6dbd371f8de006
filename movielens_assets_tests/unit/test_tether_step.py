"""A step process of Dagster's multiprocess executor ends with the run worker that spawned it.

Real processes: a stand-in run worker spawns a child with ``multiprocessing`` (start method
``spawn``, Dagster's default for its multiprocess executor); the child calls
``end_with_spawning_process`` as the dbt step does; the worker is SIGKILLed.
"""

import os
import signal
import subprocess
import sys
import time

from movielens_assets.lib.tether import end_with_spawning_process

WORKER = """
import multiprocessing, time
from movielens_assets_tests.unit.test_tether_step import step
process = multiprocessing.get_context("spawn").Process(target=step)
process.start()
print(process.pid, flush=True)
time.sleep(600)
"""


def step() -> None:
    """The step process: tie itself to the worker, then work for a long time."""
    assert end_with_spawning_process() is not None
    time.sleep(600)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_spawned_step_process_ends_when_its_run_worker_is_killed():
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    try:
        step_pid = int(worker.stdout.readline())
        time.sleep(1.0)  # the step process is up and tied (or it would see the worker gone)
        assert alive(step_pid)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        deadline = time.monotonic() + 10
        while alive(step_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(step_pid), "the step process outlived its run worker"
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_process_not_spawned_by_multiprocessing_is_left_alone():
    assert end_with_spawning_process() is None
