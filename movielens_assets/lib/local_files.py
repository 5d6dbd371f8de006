"""Finding a MovieLens dataset's files in a local folder, and counting their rows cheaply."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from movielens_assets.datasets import DATASETS, dataset_for_local_file

CSV_SUFFIXES = (".csv", ".csv.gz")
CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    """A local CSV file and the S3 file name it lands under."""

    dataset: str
    path: Path

    @property
    def name(self) -> str:
        """The object name inside the dataset's S3 folder."""
        return self.path.name


def _is_csv(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(CSV_SUFFIXES)


def find_local_files(data_dir: Path) -> dict[str, list[LocalFile]]:
    """The files of each dataset in ``data_dir``, in either layout GroupLens users have.

    - flat, as GroupLens ships it: ``movies.csv``, ``genome-scores.csv`` (or ``.csv.gz``);
    - one sub-folder per dataset holding any number of files: ``ratings/2024-01.csv``.

    Every dataset has an entry; a missing dataset has an empty list.
    """
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"{data_dir} is not a folder; pass --data a folder holding movies.csv, ratings.csv, "
            "... or one sub-folder per dataset."
        )
    found: dict[str, list[LocalFile]] = {name: [] for name in DATASETS}
    for path in sorted(data_dir.iterdir()):
        if _is_csv(path) and (dataset := dataset_for_local_file(path.name)):
            found[dataset].append(LocalFile(dataset, path))
        elif path.is_dir() and path.name in DATASETS:
            found[path.name].extend(
                LocalFile(path.name, child) for child in sorted(path.iterdir()) if _is_csv(child)
            )
    return found


def count_data_rows(path: Path) -> int:
    """Data rows (lines after the header) of a CSV file, gzip or not.

    Counts line breaks, so it assumes no field holds a line break (true of MovieLens files);
    a last line without a trailing newline still counts.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    lines = 0
    last = b"\n"
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)
