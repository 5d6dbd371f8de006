"""The registry of bench parts measured after the pipeline, while the S3 server is up.

A part is a module with a ``measure(context)`` function (and, if it runs code in a child
process, phase functions): see "Adding a part" in the package's docstring. ``run_bench`` calls
each part of ``PARTS`` in order, after the pipeline and incremental runs; its row goes to
``results["phases"][part.name]`` and the table shows it under ``part.label``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from movielens_assets.tools.bench import code_location
from movielens_assets.tools.bench.orchestration import Runner

Phase = Callable[[dict[str, Any]], dict[str, Any]]
"""A phase run in a child process: its JSON arguments in, its JSON result out."""


@dataclass(frozen=True)
class BenchContext:
    """What a part gets: the runner and the state the benchmark has built so far."""

    runner: Runner
    """Runs phases and commands in subprocesses and measures them; ``runner.work`` is the
    benchmark's folder (a part keeps its files under ``runner.work / <part name>``)."""
    ratings: int
    """Ratings of the full-size set."""
    seed: int
    """The benchmark's random seed."""
    data_dir: Path
    """The full-size generated set (the six GroupLens files)."""
    env: dict[str, str]
    """The full-size pipeline's environment (its ``MOVIELENS_HOME`` and S3 bucket): the set and
    one increment are landed there and loaded; pass it to ``runner.phase(..., **env)``."""
    repeats: int
    """How often a short measurement is repeated (the row keeps the median)."""
    measured: Mapping[str, dict[str, Any]]
    """The rows measured so far, by name (``baseline``, ``pipeline``, ``incremental``, ...)."""


@dataclass(frozen=True)
class Part:
    """One registered bench part."""

    name: str
    """Its key in ``results["phases"]`` (snake case)."""
    label: str
    """Its row's label in the table."""
    measure: Callable[[BenchContext], dict[str, Any]]
    """Measures the part; returns its row (``orchestration.phase_line`` makes one)."""
    phases: Mapping[str, Phase] = field(default_factory=dict)
    """Its child-process phases by name, for ``runner.phase(label, <name>, spec)``."""


PARTS: tuple[Part, ...] = (
    Part(
        name="code_location",
        label="code location import",
        measure=code_location.measure,
    ),
)
"""Every part, in the order they run and are shown."""
