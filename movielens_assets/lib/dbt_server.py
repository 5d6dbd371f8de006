"""A warm dbt for the embedded default: dbt imported and the project parsed once, every call a fork.

Every dbt call pays about 1.8 s before its first node runs: 1.1 s importing dbt and 0.7 s of
partial parse, whatever the data (``movielens bench``). ``movielens dev`` and the benchmark
start this server, and set ``MOVIELENS_DBT_SERVER`` to its socket; ``dbt_process`` (what
``movielens-dbt`` runs) then hands its call to the server instead of running dbt itself::

    run worker -> movielens-dbt (tether) -> dbt_process (client) --socket--> server
                                                                     `-> fork: dbt <args>

- The client sends its arguments, environment, working folder and its stdin, stdout and stderr
  (``SCM_RIGHTS``). The fork runs dbt's command line on them with the parsed manifest, so
  dagster-dbt reads the same output and gets the same exit status as from a dbt of its own.
- The manifest is reused only while nothing it was parsed from changed: the project's files
  (size and mtime), ``profiles.yml``, the flags and environment variables that select the
  project, profile, target and variables (``parse_key``). Otherwise the server parses again
  (dbt's partial parse, as a call would), in the call's environment.
- A fork ends when its client ends (the tether's SIGKILL of a dead run's dbt reaches it through
  the client), and when the server ends. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the client
  are forwarded to the fork (dagster-dbt interrupts dbt with SIGINT when a run is terminated).
- A fork never parses. Commands that are not about the project's nodes (``parse``, ``deps``,
  ``debug``...), calls with ``--no-partial-parse`` and calls whose project does not parse are
  declined, and the client runs them itself, as a plain dbt. dbt's parser runs Rust code
  (``dbt_extractor``) on a thread pool that the server's own parse starts and that a fork does
  not inherit: a fork that parsed would wait for those threads for ever.

Without ``MOVIELENS_DBT_SERVER``, or with no server answering on it, ``dbt_process`` runs dbt
in its own process, as before. Production deployments do not run this server: on Snowflake a
dbt call's 1.8 s are small beside its queries.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from movielens_assets.lib.tether import FORWARDED_SIGNALS, ended_within, pidfd_of

SERVER_ENV = "MOVIELENS_DBT_SERVER"
"""The server's socket path, for ``dbt_process`` to hand its call to."""
MANIFEST_COMMANDS = frozenset(
    {"build", "run", "test", "seed", "snapshot", "compile", "ls", "list", "show"}
)
"""dbt commands that run on the manifest, and get the server's parsed one."""
PARSE_FLAGS = {
    "DBT_PROJECT_DIR": ("--project-dir",),
    "DBT_PROFILES_DIR": ("--profiles-dir",),
    "DBT_PROFILE": ("--profile",),
    "DBT_TARGET": ("--target", "-t"),
    "DBT_VARS": ("--vars",),
}
"""The flags (by the environment variable dbt also reads for each) that change what a parse
gives."""
PARSE_ENV_PREFIXES = ("MOVIELENS_", "SNOWFLAKE_", "DBT_ENV_")
"""Variables the project and its profile read (``env_var``), all part of the parse key..."""
PER_CALL_ENV = frozenset({"MOVIELENS_DBT_TESTS_SINCE", SERVER_ENV})
"""...but these, which dbt reads only while it runs nodes (``{% if execute %}``)."""
SKIPPED_FOLDERS = frozenset({"target", "logs", "dbt_packages", "__pycache__"})
HEADER = struct.Struct("!I")
STREAMS = 3
"""stdin, stdout, stderr."""
PR_SET_PDEATHSIG = 1
MAX_SOCKET_PATH = 100
"""Bytes of a socket path (Linux allows 107)."""


class DbtServerError(RuntimeError):
    """The server cannot start (its socket path is taken or too long)."""


def command_of(argv: Sequence[str]) -> str | None:
    """The dbt command in ``argv``: its first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def _flag(argv: Sequence[str], names: Sequence[str]) -> str | None:
    value = None
    for index, word in enumerate(argv):
        for name in names:
            if word == name and index + 1 < len(argv):
                value = argv[index + 1]
            elif word.startswith(name + "="):
                value = word.split("=", 1)[1]
    return value


def _files(folder: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file the project could be parsed from."""
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_FOLDERS and f[0] != ".")
        for name in sorted(names):
            path = Path(root, name)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return found


def parse_key(argv: Sequence[str], env: dict[str, str], cwd: str) -> str:
    """What a parse of the project for this call depends on, hashed.

    Two calls with the same key get the same manifest: the same files, flags and variables.
    """
    selected = {
        variable: _flag(argv, flags) or env.get(variable) for variable, flags in PARSE_FLAGS.items()
    }
    project = Path(cwd, selected["DBT_PROJECT_DIR"] or ".").resolve()
    # dbt's default: the working folder if it has a profiles.yml, else ~/.dbt
    default_profiles = Path(cwd) if Path(cwd, "profiles.yml").exists() else Path.home() / ".dbt"
    profiles = Path(cwd, selected["DBT_PROFILES_DIR"] or default_profiles).resolve()
    variables = sorted(
        (name, value)
        for name, value in env.items()
        if name.startswith(PARSE_ENV_PREFIXES) and name not in PER_CALL_ENV
    )
    profile_files = [f for f in _files(profiles) if f[0] == "profiles.yml"]
    state = [str(project), str(profiles), selected, variables, _files(project), profile_files]
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def parse_args(argv: Sequence[str]) -> list[str]:
    """``dbt parse`` arguments selecting what the call's own parse would."""
    args = ["parse", "--quiet", "--no-write-json", "--log-level-file", "none"]
    for flags in PARSE_FLAGS.values():
        value = _flag(argv, flags)
        if value is not None:
            args += [flags[0], value]
    return args


class Server:
    """The warm process: dbt imported once, the last manifest kept with its parse key."""

    def __init__(self, path: Path) -> None:
        from dbt.cli.main import dbtRunner

        self.runner = dbtRunner
        self.key: str | None = None
        self.manifest: Any = None
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o077)  # the socket: only this user may hand the server a call
        try:
            self.listener.bind(str(path))
        except OSError as error:
            raise DbtServerError(f"cannot listen on {path}: {error}") from error
        finally:
            os.umask(umask)
        self.listener.listen(16)
        self.clients: dict[int, socket.socket] = {}
        """Each running fork's client connection, by the fork's pid."""

    def manifest_for(self, argv: list[str], env: dict[str, str], cwd: str) -> Any:
        """The manifest this call would parse, parsed again only if its key changed."""
        command = command_of(argv)
        if command not in MANIFEST_COMMANDS | {"parse"} or "--no-partial-parse" in argv:
            return None
        key = parse_key(argv, env, cwd)
        if key != self.key:
            saved = dict(os.environ), os.getcwd()
            os.environ.clear()
            os.environ.update(env)
            os.chdir(cwd)
            started = time.perf_counter()
            try:
                result = self.runner().invoke(parse_args(argv))
            finally:
                os.environ.clear()
                os.environ.update(saved[0])
                os.chdir(saved[1])
            self.key, self.manifest = (key, result.result) if result.success else (None, None)
            outcome = "parsed" if result.success else "could not parse (the call will say why)"
            say(f"{outcome} the project in {time.perf_counter() - started:.2f} s for `{command}`")
        elif command in MANIFEST_COMMANDS:
            say(f"`{command}` on the project parsed before")
        return self.manifest if command in MANIFEST_COMMANDS else None

    def serve(self, parent: int | None) -> None:
        """Answer calls until SIGTERM, or until ``parent`` ends."""
        events = selectors.DefaultSelector()
        events.register(self.listener, selectors.EVENT_READ, "call")
        if parent is not None:
            events.register(os.pidfd_open(parent), selectors.EVENT_READ, "parent")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the parent's
        print(f"listening {self.path}", flush=True)
        while not stop.is_set():
            for key, _ in events.select(timeout=0.5):
                if key.data == "parent":
                    return
                if key.data == "call":
                    self.accept(events)
                else:
                    self.reap(events, key.fileobj, key.data)

    def accept(self, events: selectors.BaseSelector) -> None:
        """Read one call, fork its dbt, tell the client the fork's pid; or decline the call
        (``decline``) when it needs a parse of its own."""
        connection, _ = self.listener.accept()
        try:
            connection.settimeout(10)
            request, fds = read_request(connection)
            connection.settimeout(None)
        except (OSError, ValueError) as error:
            say(f"a call could not be read: {error}")
            connection.close()
            return
        try:
            manifest = self.manifest_for(request["argv"], request["env"], request["cwd"])
        except OSError as error:  # the call's dbt parses for itself
            say(f"no parse for a call: {error}")
            manifest = None
        if manifest is None:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                connection.sendall(b"decline\n")
            connection.close()
            say(f"`{command_of(request['argv'])}` declined: it parses, so its caller runs it")
            return
        client = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        client_pid = struct.unpack("3i", client)[0]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self.listener.close()
            connection.close()
            run_call(request, fds, manifest, client_pid)
        for fd in fds:
            os.close(fd)
        try:
            connection.sendall(f"pid {pid}\n".encode())
        except OSError:
            pass  # the client is gone: the fork sees it too, and ends
        pidfd = os.pidfd_open(pid)
        events.register(pidfd, selectors.EVENT_READ, pid)
        self.clients[pid] = connection

    def reap(self, events: selectors.BaseSelector, pidfd: Any, pid: int) -> None:
        """Send an ended fork's exit status to its client."""
        events.unregister(pidfd)
        os.close(pidfd)
        connection = self.clients.pop(pid)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        try:
            connection.sendall(f"exit {128 - code if code < 0 else code}\n".encode())
        except OSError:
            pass  # the client is gone
        connection.close()


def say(line: str) -> None:
    """A line of the server's log (stderr: stdout only says that it listens)."""
    print(f"dbt server: {line}", file=sys.stderr, flush=True)


def read_request(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """A call: its JSON (argv, env, cwd) and the client's three stream descriptors."""
    header, fds, _, _ = socket.recv_fds(connection, HEADER.size, STREAMS)
    if len(header) != HEADER.size or len(fds) != STREAMS:
        for fd in fds:
            os.close(fd)
        raise ValueError("a call must start with its length and three descriptors")
    (size,) = HEADER.unpack(header)
    body = b""
    try:
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ValueError("the call ended early")
            body += chunk
        request = json.loads(body)
        return {key: request[key] for key in ("argv", "env", "cwd", "umask")}, fds
    except (OSError, ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        raise


def run_call(request: dict[str, Any], fds: list[int], manifest: Any, client: int) -> None:
    """In the fork: become the client's dbt, and end with dbt's status (never returns)."""
    from movielens_assets.lib import dbt_process

    try:
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for stream, fd in enumerate(fds):
            os.dup2(fd, stream)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(request["umask"])  # dbt's files get the modes the client's own would
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        sys.stdout.reconfigure(line_buffering=True, write_through=unbuffered)  # type: ignore[union-attr]
        client_fd = pidfd_of(client)

        def end_with_client() -> None:
            while not ended_within(client_fd, 0.2):
                pass
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=end_with_client, daemon=True).start()
        status = dbt_process.run(request["argv"], manifest)
    except BaseException as error:  # noqa: BLE001 - the fork must end here, whatever happened
        print(f"dbt server: the call failed: {error!r}", file=sys.stderr)
        status = 1
    dbt_process.finish(status)


def call_server(path: str, argv: Sequence[str]) -> int | None:
    """Run ``argv`` on the server at ``path``: dbt's exit status, or None if the server declined
    the call or none answered (said on stderr): nothing was started, the caller runs dbt."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        umask = os.umask(0)
        os.umask(umask)
        body = json.dumps(
            {"argv": list(argv), "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}
        )
        socket.send_fds(connection, [HEADER.pack(len(body.encode()))], [0, 1, 2])
        connection.sendall(body.encode())
        replies = connection.makefile("rb")
        started = replies.readline().split()
    except OSError:
        connection.close()
        started = []
    if started == [b"decline"]:
        connection.close()
        return None
    if len(started) != 2 or started[0] != b"pid":
        print(f"movielens-dbt: no dbt server answers on {path}; running dbt here", file=sys.stderr)
        return None
    pid = int(started[1])

    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    ended = replies.readline().split()
    if len(ended) != 2 or ended[0] != b"exit":
        print(f"movielens-dbt: the dbt server at {path} ended before dbt did", file=sys.stderr)
        return 1
    return int(ended[1])


def call_answered(path: Path) -> bool:
    """Whether a server listens on ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def socket_for(home: Path) -> Path:
    """The server socket of a ``MOVIELENS_HOME``: in it, or in the temporary folder (named
    after it) when its path would be too long for a socket."""
    path = home / "dbt.sock"
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"movielens-dbt-{digest}.sock"


def server_command(path: Path, parent: int | None = None) -> list[str]:
    """The command that runs a server on ``path`` (ending with ``parent`` if given)."""
    command = [sys.executable, "-m", "movielens_assets.lib.dbt_server", str(path)]
    return command + (["--parent", str(parent)] if parent else [])


@contextlib.contextmanager
def serving(path: Path, log: IO[bytes] | None = None) -> Iterator[subprocess.Popen]:
    """A server on ``path`` as a child of this process, once it listens; stopped at the end."""
    process = subprocess.Popen(
        server_command(path, os.getpid()), stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().decode().strip()
        if ready != f"listening {path}":
            process.wait(timeout=30)
            raise DbtServerError(f"the dbt server did not start ({ready or 'no output'})")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m movielens_assets.lib.dbt_server SOCKET [--parent PID]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket", type=Path)
    parser.add_argument("--parent", type=int, help="end when this process ends")
    args = parser.parse_args(argv)
    if len(os.fsencode(args.socket)) > MAX_SOCKET_PATH:
        raise DbtServerError(f"{args.socket}: a socket path may have {MAX_SOCKET_PATH} bytes")
    if call_answered(args.socket):
        raise DbtServerError(f"{args.socket}: another dbt server listens there")
    args.socket.unlink(missing_ok=True)
    server = Server(args.socket)
    try:
        server.serve(args.parent)
    finally:
        args.socket.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip tearing down dbt's modules (children end with PR_SET_PDEATHSIG)
