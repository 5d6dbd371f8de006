"""``movielens bench``: the pipeline against the bare-DuckDB limit, on the same files, in one run.

Phases, each in its own subprocess so that each one's peak RSS is its own (``os.wait4`` reports
the largest resident set of the process and of every child it waited for, e.g. dbt):

1. ``baseline``: ``bench/baseline.sql`` in a fresh DuckDB file: the six CSVs, every model and
   every dbt test, typed straight into DuckDB (no Dagster, no dbt, no S3);
2. ``plain dbt``: RAW loaded by the baseline's RAW section (untimed), then ``dbt build`` alone;
3. ``pipeline``: the files landed in a loopback S3 server first (untimed, once for every pair),
   then ``movielens run`` in a fresh ``MOVIELENS_HOME``; timed: the Dagster run, start to end,
   less its landing step (i.e. raw, dbt and the checks; each step's seconds are kept too);
4. ``incremental``: a ratings file with 1% new (user, movie) pairs and some re-ratings lands,
   the S3 landing sensor is ticked, and the run it requests is executed; measured on the full
   table and on a quarter-size table (same file, and a 1%-of-quarter file), to tell whether it
   grows with the file or with the table.

Plus the time to import the code location. ``run_bench`` returns (and ``--json`` writes)
everything; ``format_table`` renders the table the README shows. Timings are noisy on a shared
machine, so the baseline and the pipeline run ``--pairs`` times (default 3), the baseline then
the pipeline each time, and the pair with the median ratio is reported (every pair is in the
JSON and the table); everything else is measured once. Timings stay out of the test suite.

The S3 server is the project's loopback one (``tools/local_s3_server.py``: moto's API, objects
on disk), in its own process for the whole benchmark, as ``movielens run`` and ``movielens dev``
start it.

The modules, by job:

- ``phases``: the child side, one function per phase, run as
  ``python -m movielens_assets.tools.bench <phase> <spec-json> <out-json>``; ``increment`` writes
  the incremental ratings file; ``dbt_results`` reads where dbt's time went;
- ``orchestration``: the parent side's ``Runner`` (a phase in a subprocess, its wall time and the
  peak RSS of its process tree), the children's environment, the machine's facts;
- ``baseline``, ``pipeline``: the parent side of the baseline and plain-dbt measurements, and of
  the pipeline and incremental ones;
- ``parts``: the registry of the parts measured after those, with the S3 server up (the code
  location import, in ``code_location``, is the first);
- ``run``: ``run_bench``, the whole sequence; ``report``: ratios, targets and the table.

Adding a part (for example the S3 server's idle CPU, or the cost of a sensor tick): write a module
``movielens_assets/tools/bench/<part>.py`` with a ``measure(context: BenchContext) -> dict`` that
runs what it needs through ``context.runner`` (``runner.phase(...)`` for a phase in a subprocess,
``runner.command(...)`` for any command) and returns one row made by ``phase_line`` (or a dict
with at least ``wall_s``, ``peak_rss_mib``, ``rows``, ``rows_per_s``); if it needs code run in a
child process, give it functions ``(spec: dict) -> dict`` and name them in its ``Part``'s
``phases``. Then add its ``Part`` to ``PARTS`` in ``parts.py``: the part is run, written to the
JSON under ``phases[<name>]`` and shown as a row of the table, after the code location.
"""

from movielens_assets.tools.bench.errors import BenchError
from movielens_assets.tools.bench.report import TABLE_ROWS, TARGETS, assess, format_table
from movielens_assets.tools.bench.run import run_bench

__all__ = ["TABLE_ROWS", "TARGETS", "BenchError", "assess", "format_table", "run_bench"]
