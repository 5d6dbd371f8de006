"""What a ``COPY INTO`` reports per file, read from its result and matched to the S3 objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import LoadReport


@dataclass(frozen=True)
class CopyResult:
    """One row of a ``COPY INTO`` result: what Snowflake did with one file."""

    file: str
    status: str
    rows_parsed: int
    rows_loaded: int
    errors_seen: int
    first_error: str | None = None
    first_error_line: int | None = None
    first_error_column: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CopyResult:
        """From a result row keyed by lower-case column name."""
        return cls(
            file=str(row["file"]),
            status=str(row["status"]).upper(),
            rows_parsed=int(row.get("rows_parsed") or 0),
            rows_loaded=int(row.get("rows_loaded") or 0),
            errors_seen=int(row.get("errors_seen") or 0),
            first_error=row.get("first_error"),
            first_error_line=row.get("first_error_line"),
            first_error_column=row.get("first_error_column_name"),
        )

    def as_metadata(self) -> dict[str, Any]:
        """The fields shown in asset metadata."""
        return {
            "file": self.file,
            "status": self.status,
            "rows_parsed": self.rows_parsed,
            "rows_loaded": self.rows_loaded,
            "errors_seen": self.errors_seen,
            "first_error": self.first_error,
        }


@dataclass
class SnowflakeLoadReport(LoadReport):
    """A ``LoadReport`` that also carries Snowflake's per-file COPY results."""

    copy_results: list[CopyResult] = field(default_factory=list)

    def file_results(self) -> list[dict[str, Any]]:
        """COPY's result per file: status, rows parsed and loaded, errors, first error."""
        return [result.as_metadata() for result in self.copy_results]


def copy_results(cursor: Any) -> list[CopyResult]:
    """The per-file rows of a COPY's result; empty when there were no files to process."""
    names = [column[0].lower() for column in cursor.description or ()]
    if "file" not in names:
        return []
    return [CopyResult.from_row(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


def unreported(results: Sequence[CopyResult], objects: Sequence[S3Object]) -> list[S3Object]:
    """The objects a COPY was given but reported nothing about (it must report every file)."""
    reported = {id(match_file(result.file, objects)) for result in results}
    return [obj for obj in objects if id(obj) not in reported]


def match_file(result_file: str, objects: Sequence[S3Object]) -> S3Object | None:
    """The object a COPY result row is about.

    Snowflake names the file by its full URL for external stages and by ``stage/path`` for
    internal ones; both end with the S3 key or with its path inside the stage.
    """
    best: S3Object | None = None
    for obj in objects:
        key = obj.key
        if result_file == key or result_file.endswith("/" + key):
            return obj
        name = key.rsplit("/", 1)[-1]
        if result_file.endswith("/" + name) or result_file == name:
            best = best or obj
    return best
