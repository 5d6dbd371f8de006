"""The six MovieLens datasets: their files, their columns and the RAW tables they load into.

This module is the contract between the landing bucket, the warehouse loaders and the dbt
sources: column names and order are exactly those of the GroupLens CSV headers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One CSV column and the warehouse type it is loaded as."""

    name: str
    duckdb_type: str
    snowflake_type: str


@dataclass(frozen=True)
class Dataset:
    """A MovieLens dataset: one S3 prefix, one RAW table, any number of CSV files."""

    name: str
    grouplens_file: str
    columns: tuple[Column, ...]
    description: str

    @property
    def raw_table(self) -> str:
        """The RAW table name, e.g. ``raw_ratings``."""
        return f"raw_{self.name}"

    @property
    def header(self) -> tuple[str, ...]:
        """The exact CSV header GroupLens ships."""
        return tuple(column.name for column in self.columns)


INTEGER = ("integer", "number(38,0)")
BIGINT = ("bigint", "number(38,0)")
DOUBLE = ("double", "float")
TEXT = ("varchar", "varchar")


def _columns(*pairs: tuple[str, tuple[str, str]]) -> tuple[Column, ...]:
    return tuple(Column(name, duck, snow) for name, (duck, snow) in pairs)


DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            "movies",
            "movies.csv",
            _columns(("movieId", INTEGER), ("title", TEXT), ("genres", TEXT)),
            "One row per movie: title with release year, pipe-separated genres.",
        ),
        Dataset(
            "ratings",
            "ratings.csv",
            _columns(
                ("userId", INTEGER),
                ("movieId", INTEGER),
                ("rating", DOUBLE),
                ("timestamp", BIGINT),
            ),
            "One row per rating: a user's 0.5-5.0 star rating of a movie, unix seconds.",
        ),
        Dataset(
            "tags",
            "tags.csv",
            _columns(
                ("userId", INTEGER),
                ("movieId", INTEGER),
                ("tag", TEXT),
                ("timestamp", BIGINT),
            ),
            "One row per tag a user applied to a movie, unix seconds.",
        ),
        Dataset(
            "links",
            "links.csv",
            _columns(("movieId", INTEGER), ("imdbId", TEXT), ("tmdbId", INTEGER)),
            "One row per movie: its IMDb id (text, leading zeros kept) and TMDb id.",
        ),
        Dataset(
            "genome_tags",
            "genome-tags.csv",
            _columns(("tagId", INTEGER), ("tag", TEXT)),
            "One row per tag of the tag genome.",
        ),
        Dataset(
            "genome_scores",
            "genome-scores.csv",
            _columns(("movieId", INTEGER), ("tagId", INTEGER), ("relevance", DOUBLE)),
            "One row per (movie, genome tag): how strongly the tag applies, in [0, 1].",
        ),
    )
}

METADATA_COLUMNS = (
    Column("_source_file", "varchar", "varchar"),
    Column("_loaded_at", "timestamp", "timestamp_ntz"),
)
"""Columns every RAW table has after the CSV columns: the S3 key and the UTC load time."""

LEDGER_TABLE = "load_ledger"
"""The RAW-schema table recording every loaded file (the project's own load metadata)."""


def dataset_for_local_file(file_name: str) -> str | None:
    """The dataset a GroupLens file name belongs to (``genome-scores.csv`` -> ``genome_scores``)."""
    stem = file_name.lower().removesuffix(".gz").removesuffix(".csv").replace("-", "_")
    return stem if stem in DATASETS else None
