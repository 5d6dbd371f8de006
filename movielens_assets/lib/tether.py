"""Run a command tied to the process that started it: when that process dies, the command dies.

dagster-dbt runs dbt as a child of the run worker; a SIGKILLed worker used to leave dbt running,
re-parented to init, still writing to the warehouse. Linux's ``PR_SET_PDEATHSIG`` alone does not
tie a child to a *process*: it fires when the *thread* that forked the child exits (measured:
a child forked from a thread that then ends is killed although its process lives on), and
dagster-dbt gives no promise about which thread starts dbt. So a launcher sits in between::

    run worker --(pidfd: the whole process)--> launcher --(PDEATHSIG: its one thread)--> command

- The launcher watches its parent *process* through a pidfd. When the parent ends, it ends the
  command's process group: SIGKILL at once with ``orphan_grace=0`` (dbt: nothing may keep
  writing once the run is dead), otherwise SIGTERM, ``orphan_grace`` seconds, then SIGKILL.
- The command runs in a process group of its own, out of reach of the terminal's Ctrl-C (the
  parent decides what to forward), and is tied with ``PR_SET_PDEATHSIG`` to the launcher, whose
  only thread started it: a SIGKILL of the launcher ends the command too.
- SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the launcher are forwarded to the command's group
  (dagster-dbt interrupts dbt with SIGINT when a run is terminated); a group still running
  ``stop_grace`` seconds later is killed. The launcher exits with the command's status
  (``128 + N`` for a command ended by signal N, as a shell reports it).

``movielens-dbt`` (the ``dbt_executable`` of the dbt resource) runs the dbt installed with this
Python this way (through ``dbt_process.py``: dbt's command line, less the interpreter's
teardown); ``movielens dev`` starts its webserver and daemon with ``python -m
movielens_assets.lib.tether``, so their code servers and run workers end with it. On systems
without pidfds the parent is polled; without ``prctl`` the launcher-to-command tie is skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal a process gets when its parent thread exits."""
POLL_SECONDS = 0.2
"""How often deadlines (and, without pidfds, the processes) are checked."""
ORPHANED = 125
"""Exit status when the launcher finds its parent already gone."""
DBT_STOP_GRACE_SECONDS = 3.0
"""How long dbt may take to cancel its queries after an interrupt before it is killed."""


class TetherError(RuntimeError):
    """The command cannot be run tied to its parent."""


def end_with_spawning_process() -> threading.Thread | None:
    """In a process that ``multiprocessing`` spawned, end this process when its parent ends.

    Dagster's multiprocess executor (the Snowflake target's) runs each step in a process
    spawned by the run worker; a SIGKILLed worker leaves that step process running, and with
    it the dbt it started (``movielens-dbt`` watches the step process, its parent). A daemon
    thread waits on the spawning process and SIGKILLs this one when it ends, so the launcher
    then ends dbt. Returns the thread, or None in a process not spawned by ``multiprocessing``
    (the in-process executor: the step runs in the worker itself, which the launcher watches).
    """
    spawner = multiprocessing.parent_process()
    if spawner is None or spawner.pid is None:
        return None
    parent = spawner.pid
    parent_fd = pidfd_of(parent)

    def watch() -> None:
        while os.getppid() == parent and not ended_within(parent_fd, POLL_SECONDS):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="movielens-end-with-run-worker", daemon=True)
    thread.start()
    return thread


def ended_within(fd: int | None, timeout: float) -> bool:
    """Whether the process behind a pidfd ended within ``timeout`` s (without one: sleeps)."""
    if fd is None:
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


def pidfd_of(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once the whole process has ended), or None if unsupported."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except (OSError, ProcessLookupError):
        return None


def _tie_to(launcher: int, signum: int) -> Callable[[], None]:
    """A ``preexec_fn`` giving the child ``signum`` when the launcher (single-threaded) dies."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except AttributeError:  # not Linux: the launcher still watches the parent
        return lambda: None

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != launcher:  # the launcher died before the tie held
            os._exit(ORPHANED)

    return tie


def _running_members(pgid: int) -> bool | None:
    """Whether a process other than a zombie is in group ``pgid``; None without ``/proc``.

    dbt leaves a helper process behind that init adopts; once it has exited it stays in the
    group as a zombie until init reaps it (measured: ~1.8 s in a container), holding nothing.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (its zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal (setuid): still there
        return True
    live = _running_members(pgid)
    return True if live is None else live


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _end_group(child: subprocess.Popen, grace: float, first: int = signal.SIGTERM) -> None:
    """Send ``first`` to the child's group (SIGKILL when ``grace`` is 0), wait up to ``grace``
    seconds for the group to be empty, then SIGKILL what is left. Reaps the child."""
    _signal_group(child.pid, first if grace > 0 else signal.SIGKILL)
    deadline = time.monotonic() + grace
    while group_running(child.pid):
        if time.monotonic() >= deadline:
            _signal_group(child.pid, signal.SIGKILL)
            break
        time.sleep(min(POLL_SECONDS / 4, max(deadline - time.monotonic(), 0.0)))
    child.wait()  # it has exited or was just killed


def exit_status(returncode: int) -> int:
    """A ``Popen.returncode`` as a process exit status (``-N`` for signal N is ``128 + N``)."""
    return 128 - returncode if returncode < 0 else returncode


def run_tethered(
    command: Sequence[str], orphan_grace: float = 0.0, stop_grace: float = 10.0
) -> int:
    """Run ``command`` until it exits, or until this process's parent dies; return its status.

    ``orphan_grace``: seconds the command's group gets (after SIGTERM) once the parent has died;
    0 kills it at once. ``stop_grace``: seconds it gets after a forwarded signal.
    """
    if not command:
        raise TetherError("no command to run")
    parent = os.getppid()
    parent_fd = pidfd_of(parent)
    if parent == 1 or os.getppid() != parent:
        return ORPHANED
    pending: list[int] = []
    child: subprocess.Popen | None = None
    child_fd: int | None = None
    stop_deadline: list[float] = []

    def forward(signum: int, frame: object) -> None:
        if child is None:
            pending.append(signum)
            return
        _signal_group(child.pid, signum)
        if not stop_deadline:
            stop_deadline.append(time.monotonic() + stop_grace)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        try:
            child = subprocess.Popen(
                list(command),
                process_group=0,
                preexec_fn=_tie_to(os.getpid(), signal.SIGKILL),
            )
        except OSError as error:
            raise TetherError(f"cannot start {command[0]}: {error}") from error
        for signum in pending:
            forward(signum, None)
        child_fd = pidfd_of(child.pid)
        watched = [fd for fd in (parent_fd, child_fd) if fd is not None]
        while True:
            # pidfds wake the loop at once; the timeout is for deadlines and pidfd-less systems
            ready, _, _ = select.select(watched, [], [], POLL_SECONDS)
            if child.poll() is not None:
                # the command is done; anything it left in its group goes with it
                if group_running(child.pid):
                    _end_group(child, stop_grace)
                return exit_status(child.returncode)
            if parent_fd in ready or os.getppid() != parent:
                _end_group(child, orphan_grace)
                return exit_status(child.returncode)
            if stop_deadline and time.monotonic() >= stop_deadline[0]:
                _end_group(child, 0)
                return exit_status(child.returncode)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for fd in (parent_fd, child_fd):
            if fd is not None:
                os.close(fd)


def dbt_main() -> int:
    """``movielens-dbt``: dbt, tied to the process that runs it (dagster-dbt's run worker)."""
    try:
        return run_tethered(
            [sys.executable, "-m", "movielens_assets.lib.dbt_process", *sys.argv[1:]],
            orphan_grace=0.0,
            stop_grace=DBT_STOP_GRACE_SECONDS,
        )
    except TetherError as error:
        print(f"movielens-dbt: {error}", file=sys.stderr)
        return 127


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m movielens_assets.lib.tether [--orphan-grace S] [--stop-grace S] -- CMD...``."""
    parser = argparse.ArgumentParser(
        prog="python -m movielens_assets.lib.tether",
        description="Run a command that ends when the process starting this one ends.",
    )
    parser.add_argument("--orphan-grace", type=float, default=0.0, help="seconds after SIGTERM")
    parser.add_argument("--stop-grace", type=float, default=10.0, help="seconds after a signal")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return run_tethered(command, args.orphan_grace, args.stop_grace)
    except TetherError as error:
        print(f"tether: {error}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
