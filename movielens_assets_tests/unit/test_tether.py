"""The launcher that ties dbt (and `movielens dev`'s webserver and daemon) to its parent.

Real processes, really killed: an intermediate Python process plays the run worker, starts the
launcher (``python -m movielens_assets.lib.tether -- CMD``), and is SIGKILLed; the command
(``sh`` that writes its pid, then execs ``sleep``) must be gone soon after.
"""

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from movielens_assets.lib.tether import PR_SET_PDEATHSIG, group_running

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process ties")

GONE_WITHIN_SECONDS = 10


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_pid(path: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"no pid in {path} after {timeout} s")


def wait_gone(pid: int, timeout: float = GONE_WITHIN_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def sleeper(pid_file: Path) -> list[str]:
    """A command that writes its pid, then becomes ``sleep`` (same pid)."""
    return ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"]


def tethered(command: list[str], *options: str) -> list[str]:
    return [sys.executable, "-m", "movielens_assets.lib.tether", *options, "--", *command]


def test_pdeathsig_fires_when_the_forking_thread_ends_though_its_process_lives(tmp_path):
    """Why the launcher exists: PR_SET_PDEATHSIG is tied to a thread, not to a process."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    started = {}

    def start() -> None:
        started["child"] = subprocess.Popen(
            ["sleep", "600"], preexec_fn=lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        )

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    child = started["child"]
    try:
        assert child.wait(timeout=GONE_WITHIN_SECONDS) == -signal.SIGKILL
    finally:
        child.kill()


def test_the_command_outlives_the_thread_that_started_the_launcher_and_dies_with_its_process(
    tmp_path,
):
    pid_file = tmp_path / "command.pid"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import subprocess, threading, time
                def start():
                    subprocess.Popen({tethered(sleeper(pid_file))!r})
                thread = threading.Thread(target=start)
                thread.start()
                thread.join()  # the thread that started the launcher is gone
                time.sleep(600)
                """
            ),
        ]
    )
    try:
        command = wait_for_pid(pid_file)
        time.sleep(1.0)
        assert alive(command), "the command died with the thread, not with the process"
        worker.kill()
        worker.wait()
        assert wait_gone(command), "the command outlived the process that started it"
    finally:
        worker.kill()


def test_the_command_dies_when_the_launcher_itself_is_killed(tmp_path):
    pid_file = tmp_path / "command.pid"
    launcher = subprocess.Popen(tethered(sleeper(pid_file)))
    try:
        command = wait_for_pid(pid_file)
        launcher.kill()
        launcher.wait()
        assert wait_gone(command)
    finally:
        launcher.kill()


def test_an_interrupt_reaches_the_command_and_its_exit_status_comes_back(tmp_path):
    ready = tmp_path / "ready"
    script = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *_: sys.exit(7))\n"
        f"pathlib.Path({str(ready)!r}).write_text('1')\n"
        "time.sleep(600)\n"
    )
    launcher = subprocess.Popen(tethered([sys.executable, "-c", script]))
    try:
        wait_for_pid(ready)
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=GONE_WITHIN_SECONDS) == 7
    finally:
        launcher.kill()


def test_a_command_that_ignores_the_interrupt_is_killed_after_the_stop_grace(tmp_path):
    pid_file = tmp_path / "command.pid"
    script = (
        "import os, pathlib, signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    launcher = subprocess.Popen(tethered([sys.executable, "-c", script], "--stop-grace", "1"))
    try:
        command = wait_for_pid(pid_file)
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=GONE_WITHIN_SECONDS) == 128 + signal.SIGKILL
        assert not alive(command)
    finally:
        launcher.kill()


def test_what_the_command_leaves_in_its_group_ends_with_its_parent_after_the_orphan_grace(
    tmp_path,
):
    """A server's own children (a code server under the webserver) end too: the whole group."""
    pid_file = tmp_path / "grandchild.pid"
    # sh starts a grandchild in its group, then waits; SIGTERM (the orphan grace) ends both
    command = tethered(
        ["sh", "-c", f"sleep 600 & echo $! > {pid_file}; wait"], "--orphan-grace", "2"
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, time; subprocess.Popen({command!r}); time.sleep(600)",
        ]
    )
    try:
        grandchild = wait_for_pid(pid_file)
        assert alive(grandchild)
        worker.kill()
        worker.wait()
        assert wait_gone(grandchild)
    finally:
        worker.kill()


def test_the_launcher_exits_with_the_status_of_its_command():
    assert subprocess.run(tethered(["sh", "-c", "exit 3"]), check=False).returncode == 3
    assert subprocess.run(tethered(["sh", "-c", "kill -TERM $$"]), check=False).returncode == (
        128 + signal.SIGTERM
    )


def test_movielens_dbt_is_the_dbt_beside_this_python():
    launcher = Path(sys.executable).parent / "movielens-dbt"
    result = subprocess.run(
        [str(launcher), "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DO_NOT_TRACK": "1"},
    )
    assert result.returncode == 0, result.stderr
    from importlib.metadata import version

    assert f"installed: {version('dbt-core')}" in result.stdout


def test_a_group_whose_last_member_is_a_zombie_counts_as_ended():
    """dbt leaves a helper behind that init adopts; once it exits, it waits in dbt's group as a
    zombie until init reaps it. Such a group has ended: the launcher must not wait for init."""
    running = subprocess.Popen(["sleep", "30"], process_group=0)
    ended = subprocess.Popen(["true"], process_group=0)
    try:
        while not Path(f"/proc/{ended.pid}").exists() or alive(ended.pid):
            time.sleep(0.01)  # exited, not reaped: a zombie in its own group
        os.killpg(ended.pid, 0)  # the kernel still counts it as a member of its group

        assert group_running(running.pid)
        assert not group_running(ended.pid)
    finally:
        running.kill()
        running.wait()
        ended.wait()
    assert not group_running(running.pid)
