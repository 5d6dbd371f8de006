"""dbt's command line, ended without the interpreter's teardown: ``python -m`` this module.

``movielens-dbt`` (``tether.py``) runs dbt this way instead of through the ``dbt`` script. Once
dbt's ``cli()`` has returned, its artifacts are written. The ``atexit`` handlers then run as at
any exit: dbt-duckdb closes its database (the checkpoint of its write-ahead log), ``logging``
flushes ``dbt.log``, ``multiprocessing`` removes its semaphores. Then the process ends with
``os._exit``. All it skips is the teardown of dbt's modules and objects (the parsed manifest is
hundreds of thousands of them): 0.6 s at the end of every dbt call, measured with the same build
ending one way and the other.

An exception that is not ``SystemExit`` (``KeyboardInterrupt``) ends the process the usual way.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


def exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` gives, printing a non-integer code as Python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run(argv: Sequence[str], manifest: Any = None) -> int:
    """dbt's command line on ``argv`` (on an already parsed ``manifest`` if given): its status."""
    from dbt.cli.main import cli

    try:
        # click names the command after the program; under ``python -m`` it would be
        # "python -m movielens_assets.lib.dbt_process" in dbt's "Command `...` succeeded" line
        cli.main(list(argv), prog_name="dbt", obj={"manifest": manifest} if manifest else None)
        return 0
    except SystemExit as exit:
        return exit_status(exit.code)


def finish(status: int) -> NoReturn:
    """Run the exit handlers, flush, and end the process with ``status``, skipping teardown."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main() -> None:
    """Run dbt on ``sys.argv[1:]``, on the warm server of ``MOVIELENS_DBT_SERVER`` if one
    answers (``dbt_server.py``), else here; end the process with dbt's status."""
    server = os.environ.get("MOVIELENS_DBT_SERVER")
    if server:
        from movielens_assets.lib.dbt_server import call_server

        status = call_server(server, sys.argv[1:])
        if status is not None:
            finish(status)
    finish(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
