"""Checks on a downloaded file before DuckDB reads it: not empty, gzip as named, its header."""

from __future__ import annotations

import gzip
from pathlib import Path

from movielens_assets.datasets import Dataset
from movielens_assets.warehouse.base import BadFileError
from movielens_assets.warehouse.csv_files import RELOAD_HINT, check_header, check_not_empty

GZIP_MAGIC = b"\x1f\x8b"


def first_line(path: Path, key: str) -> str:
    """The header line of a CSV file, gzip or not."""
    opener = gzip.open if key.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.readline(64 * 1024)
    except (OSError, EOFError) as error:
        raise BadFileError(
            key,
            f"cannot be read as {'gzip' if opener is gzip.open else 'a file'} ({error})",
            f"Name it .csv.gz only if it is gzip-compressed. {RELOAD_HINT}",
        ) from error
    if opener is open and raw.startswith(GZIP_MAGIC):
        raise BadFileError(
            key,
            "is gzip-compressed but its name does not end in .gz",
            f"Name it .csv.gz, or land it uncompressed. {RELOAD_HINT}",
            line=1,
        )
    return raw.decode("utf-8-sig", errors="replace").rstrip("\r\n")


def check_file(dataset: Dataset, key: str, path: Path) -> None:
    """Raise ``BadFileError`` for an empty file, a false ``.gz`` or a wrong header."""
    check_not_empty(dataset, key, path.stat().st_size)
    check_header(dataset, key, first_line(path, key))
