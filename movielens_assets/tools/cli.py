"""The ``movielens`` command: run the pipeline, generate data, start the UI, land files."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from movielens_assets.settings import Settings


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Materialize everything once and print the summary."""
    from movielens_assets.tools.runner import format_summary, run_pipeline

    settings = Settings.from_env()
    data_dir = Path(args.data).resolve() if args.data else None
    # Resolved now: dbt's in-process adapter may change the working directory during the run.
    summary_json = Path(args.summary_json).resolve() if args.summary_json else None
    if data_dir and not data_dir.is_dir():
        _progress(f"movielens run: --data {args.data} is not a folder")
        return 2
    _progress(f"movielens run: state in {settings.home} (MOVIELENS_HOME)")
    summary = run_pipeline(
        settings,
        data_dir=data_dir,
        full_refresh=args.full_refresh,
        progress=lambda line: _progress(f"movielens run: {line}"),
    )
    print(format_summary(summary))
    if summary_json:
        summary_json.write_text(summary.to_json())
    return 0 if summary.success else 1


def cmd_generate(args: argparse.Namespace) -> int:
    """Write an ml-20m-shaped data set."""
    from movielens_assets.project import seed_movie_ids
    from movielens_assets.tools.generate import generate

    out = Path(args.out)
    started = time.monotonic()
    counts = generate(
        out, ratings=args.ratings, seed=args.seed, progress=_progress, movie_ids=seed_movie_ids()
    )
    for name, rows in counts.items():
        print(f"{name:<14} {rows:>12,} rows")
    print(f"wrote {out} in {time.monotonic() - started:.1f} s")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the pipeline against bare DuckDB on a generated set and print the table."""
    if args.local_s3:
        return _bench_local_s3(args)
    if args.sensor:
        return cmd_bench_sensor(args)
    if args.dev_idle:
        return _bench_dev_idle(args)
    if args.latency:
        return _bench_latency(args)
    from movielens_assets.tools.bench import BenchError, format_table, run_bench

    try:
        results = run_bench(
            ratings=args.ratings,
            json_path=Path(args.json) if args.json else None,
            work_dir=Path(args.work_dir) if args.work_dir else None,
            progress=_progress,
            pairs=args.pairs,
        )
    except BenchError as error:
        _progress(f"movielens bench: {error}")
        return 1
    print(format_table(results))
    return 0


def _bench_part(
    args: argparse.Namespace,
    flag: str,
    measure: Callable[[Path], dict[str, Any]],
    format_results: Callable[[dict[str, Any]], str],
    errors: tuple[type[Exception], ...],
) -> int:
    """One ``movielens bench --<flag>`` part: measure in ``--work-dir`` (default: a temporary
    folder, removed after), write ``--json``, print the part's table."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"movielens-bench-{flag}-") as scratch:
        try:
            results = measure(Path(args.work_dir) if args.work_dir else Path(scratch))
        except errors as error:
            _progress(f"movielens bench --{flag}: {error}")
            return 1
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(format_results(results))
    return 0


def _bench_local_s3(args: argparse.Namespace) -> int:
    """``movielens bench --local-s3``: only the loopback S3's part, and its table."""
    from movielens_assets.tools.bench_local_s3 import (
        LocalS3BenchError,
        format_local_s3,
        measure_local_s3,
    )

    def measure(work_dir: Path) -> dict[str, Any]:
        return measure_local_s3(work_dir, objects=args.objects, progress=_progress)

    return _bench_part(args, "local-s3", measure, format_local_s3, (LocalS3BenchError,))


def _bench_dev_idle(args: argparse.Namespace) -> int:
    """``movielens bench --dev-idle``: a whole ``movielens dev`` stack's idle CPU, per process."""
    from movielens_assets.tools.bench_dev_idle import format_dev_idle, measure_dev_idle
    from movielens_assets.tools.bench_local_s3 import LocalS3BenchError
    from movielens_assets.tools.dev_process import DevNotReadyError

    def measure(work_dir: Path) -> dict[str, Any]:
        return measure_dev_idle(work_dir, objects=args.objects, progress=_progress)

    return _bench_part(
        args, "dev-idle", measure, format_dev_idle, (LocalS3BenchError, DevNotReadyError)
    )


def _bench_latency(args: argparse.Namespace) -> int:
    """``movielens bench --latency``: landed to queryable under ``movielens dev``, 5 files."""
    from movielens_assets.tools.bench_latency import format_latency, measure_latency
    from movielens_assets.tools.bench_local_s3 import LocalS3BenchError
    from movielens_assets.tools.dev_process import DevNotReadyError

    def measure(work_dir: Path) -> dict[str, Any]:
        return measure_latency(work_dir, progress=_progress)

    return _bench_part(
        args, "latency", measure, format_latency, (LocalS3BenchError, DevNotReadyError)
    )


def cmd_bench_sensor(args: argparse.Namespace) -> int:
    """``movielens bench --sensor``: the landing sensor's tick cost at 1k/10k/100k objects."""
    from movielens_assets.tools.bench_sensor import (
        SensorBenchError,
        format_sensor_ticks,
        measure_sensor_ticks,
    )

    def measure(work_dir: Path) -> dict[str, Any]:
        return measure_sensor_ticks(work_dir, progress=_progress)

    return _bench_part(args, "sensor", measure, format_sensor_ticks, (SensorBenchError,))


def cmd_land(args: argparse.Namespace) -> int:
    """Upload files into a dataset's landing folder of the configured (or running) S3."""
    from movielens_assets.datasets import DATASETS
    from movielens_assets.lib import s3 as s3lib
    from movielens_assets.resources import LandingBucket
    from movielens_assets.tools.local_s3 import s3_endpoint

    if args.dataset not in DATASETS:
        _progress(f"movielens land: unknown dataset {args.dataset!r}; one of {', '.join(DATASETS)}")
        return 2
    settings = Settings.from_env()
    with s3_endpoint(settings):
        bucket = LandingBucket(bucket=settings.bucket, prefix=settings.prefix)
        client = bucket.get_client()
        s3lib.ensure_bucket(client, settings.bucket)
        for name in args.files:
            path = Path(name)
            key = bucket.dataset_prefix(args.dataset) + path.name
            s3lib.upload(client, path, settings.bucket, key)
            print(f"landed {path} as s3://{settings.bucket}/{key}")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Start the local S3 server, the Dagster webserver and the daemon until interrupted.

    The webserver and the daemon run under ``lib/tether.py``: killed with SIGKILL, `movielens
    dev` leaves nothing behind. A part that cannot start is named, and the exit status is 1.
    """
    from movielens_assets.tools.dev_stack import DevStackError, run_dev_stack

    try:
        return run_dev_stack(args.port)
    except DevStackError as error:
        _progress(f"movielens dev: {error}")
        return 1


def cmd_sample(args: argparse.Namespace) -> int:
    """Prepare the bundled sample (with its synthetic tag genome) under MOVIELENS_HOME."""
    from movielens_assets.tools.sample import sample_dir

    print(sample_dir(Settings.from_env()))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    """Generate the dbt docs and serve them on 127.0.0.1 until interrupted."""
    from movielens_assets.project import DBT_PROJECT_DIR

    settings = Settings.from_env()
    env = {**os.environ, "MOVIELENS_DUCKDB_PATH": str(settings.duckdb_path)}
    dbt = str(Path(sys.executable).parent / "dbt")
    common = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    generated = subprocess.run([dbt, "docs", "generate", *common], env=env, check=False)
    if generated.returncode:
        return generated.returncode
    _progress(f"movielens docs: dbt docs on http://127.0.0.1:{args.port}. Ctrl-C stops.")
    serve = [dbt, "docs", "serve", *common, "--host", "127.0.0.1", "--port", str(args.port)]
    try:
        return subprocess.run([*serve, "--no-browser"], env=env, check=False).returncode
    except KeyboardInterrupt:
        return 0


def cmd_check_instance(args: argparse.Namespace) -> int:
    """Check that the production instance's PostgreSQL (DAGSTER_PG_*) is reachable and usable."""
    from movielens_assets.tools.instance_check import run_check

    status, line = run_check()
    print(line, file=sys.stderr if status else sys.stdout)
    return status


def cmd_init_pools(args: argparse.Namespace) -> int:
    """Give each of the project's pools a limit of its own (after ``dagster instance migrate``)."""
    from movielens_assets.tools.instance_pools import run_init_pools

    status, lines = run_init_pools()
    for line in lines:
        print(line, file=sys.stderr if status else sys.stdout)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="movielens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="land, load and transform everything once")
    run.add_argument("--data", help="folder of MovieLens CSVs (default: the bundled sample)")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental models")
    run.add_argument("--summary-json", help="also write the summary as JSON to this path")
    run.set_defaults(handler=cmd_run)

    generate = commands.add_parser("generate", help="write an ml-20m-shaped data set")
    generate.add_argument("--out", required=True, help="folder to write the six CSV files to")
    generate.add_argument("--ratings", type=int, default=20_000_263, help="ratings (scales all)")
    generate.add_argument("--seed", type=int, default=42, help="random seed")
    generate.set_defaults(handler=cmd_generate)

    bench = commands.add_parser("bench", help="benchmark the pipeline against bare DuckDB")
    bench.add_argument(
        "--ratings", type=int, default=20_000_263, help="ratings to generate (default: ml-20m's)"
    )
    bench.add_argument("--json", help="also write every figure as JSON to this path")
    bench.add_argument(
        "--pairs",
        type=int,
        default=3,
        help="baseline-then-pipeline runs at full size; the median pair is reported (default 3)",
    )
    bench.add_argument(
        "--work-dir",
        help="keep the generated files, DuckDB files and logs here (default: a new temp folder)",
    )
    bench.add_argument(
        "--local-s3",
        action="store_true",
        help="measure only the loopback S3 (idle CPU, RSS, small-file RAW load) and print it",
    )
    bench.add_argument(
        "--latency",
        action="store_true",
        help="measure only how long a landed ratings file takes to be queryable (5 files)",
    )
    bench.add_argument(
        "--dev-idle",
        action="store_true",
        help="measure only a whole `movielens dev` stack's idle CPU with --objects in its bucket",
    )
    bench.add_argument(
        "--objects",
        type=int,
        default=20_000,
        help="with --local-s3 or --dev-idle: small objects to put",
    )
    bench.add_argument(
        "--sensor",
        action="store_true",
        help="measure only the S3 landing sensor's ticks at 1k/10k/100k landed objects",
    )
    bench.set_defaults(handler=cmd_bench)

    dev = commands.add_parser("dev", help="local S3 + Dagster UI + daemon")
    dev.add_argument("--port", type=int, default=3000, help="UI port on 127.0.0.1")
    dev.set_defaults(handler=cmd_dev)

    docs = commands.add_parser("docs", help="generate and serve the dbt docs on 127.0.0.1")
    docs.add_argument("--port", type=int, default=8080, help="docs port on 127.0.0.1")
    docs.set_defaults(handler=cmd_docs)

    sample = commands.add_parser(
        "sample", help="prepare the bundled sample under MOVIELENS_HOME and print its folder"
    )
    sample.set_defaults(handler=cmd_sample)

    land = commands.add_parser("land", help="upload files into a dataset's landing folder")
    land.add_argument("files", nargs="+", help="CSV files (.csv or .csv.gz)")
    land.add_argument("--dataset", required=True, help="movies, ratings, tags, links, ...")
    land.set_defaults(handler=cmd_land)

    check = commands.add_parser(
        "check-instance",
        help="check the production instance's PostgreSQL connection (DAGSTER_PG_*)",
    )
    check.set_defaults(handler=cmd_check_instance)

    pools = commands.add_parser(
        "init-pools",
        help="give the project's pools limits of their own on the instance (DAGSTER_HOME)",
    )
    pools.set_defaults(handler=cmd_init_pools)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``movielens`` console script."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # dagster-dbt's manifest preparer runs `dbt` by name: use the one installed beside us.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
