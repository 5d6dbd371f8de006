"""The bundled sample: the real GroupLens ml-latest-small set plus a synthetic tag genome.

ml-latest-small ships no genome files, so ``genome-tags.csv`` and ``genome-scores.csv`` are
generated for it, deterministically, the first time the sample is used. The GroupLens
``README.txt`` (the data's license) travels with the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from movielens_assets.settings import Settings
from movielens_assets.tools.generate import synthesize_sample_genome

BUNDLED = Path(__file__).resolve().parents[1] / "sample_data" / "ml-latest-small"
REAL_FILES = ("movies.csv", "ratings.csv", "tags.csv", "links.csv", "README.txt")
GENOME_FILES = ("genome-tags.csv", "genome-scores.csv")


def sample_dir(settings: Settings | None = None) -> Path:
    """A folder holding all six sample datasets, made under ``MOVIELENS_HOME`` on first use."""
    settings = settings or Settings.from_env()
    target = settings.sample_dir
    if all((target / name).exists() for name in (*REAL_FILES, *GENOME_FILES)):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in REAL_FILES:
        shutil.copyfile(BUNDLED / name, target / name)
    scratch = target / ".genome-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    synthesize_sample_genome(BUNDLED, scratch)
    for name in GENOME_FILES:
        (scratch / name).replace(target / name)
    scratch.rmdir()
    return target
