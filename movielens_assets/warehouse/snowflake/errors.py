"""Snowflake's errors explained: a ``BadFileError`` naming the file, line and column, and a fix.

From an aborted COPY's message (``ABORT_STATEMENT``), from the result row of a file a
``SKIP_FILE`` COPY did not load, and from the rows of a file that break a value rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from snowflake.connector.errors import ProgrammingError

from movielens_assets.datasets import Dataset
from movielens_assets.lib.s3 import S3Object
from movielens_assets.warehouse.base import BadFileError, LoadError, ValueRule
from movielens_assets.warehouse.csv_files import RELOAD_HINT, shown
from movielens_assets.warehouse.snowflake.copy_results import CopyResult, match_file


@dataclass(frozen=True)
class CopyErrorDetail:
    """What Snowflake says about the first bad row of an aborted COPY."""

    problem: str
    file: str | None = None
    line: int | None = None
    character: int | None = None
    column: str | None = None


_FILE_LINE = re.compile(r"File '(?P<file>.*)', line (?P<line>\d+), character (?P<char>\d+)")
_ROW_COLUMN = re.compile(r'Row \d+, column "[^"]*"\["?(?P<column>[^":]*)"?:(?P<position>\d+)\]')
_COLUMN_REF = re.compile(r'\["?(?P<column>[^":]*)"?:(?P<position>\d+)\]$')


def parse_copy_error(message: str) -> CopyErrorDetail:
    """File, line, character and column from the message of an aborted ``COPY INTO``.

    Snowflake's message reads like::

        Numeric value 'abc' is not recognized
          File 'ratings/bad.csv', line 3, character 9
          Row 2, column "RAW_RATINGS"["RATING":3]
          If you would like to continue loading when an error is encountered, ...
    """
    lines = [text.strip() for text in message.splitlines() if text.strip()]
    problem = re.sub(r"^\d{6} \(\w+\): ", "", lines[0]) if lines else message
    where = _FILE_LINE.search(message)
    column = _ROW_COLUMN.search(message)
    return CopyErrorDetail(
        problem=problem,
        file=where.group("file") if where else None,
        line=int(where.group("line")) if where else None,
        character=int(where.group("char")) if where else None,
        column=(f"{column.group('column')} (field {column.group('position')})" if column else None),
    )


def copy_error(error: ProgrammingError, objects: Sequence[S3Object], dataset: Dataset) -> LoadError:
    """A ``BadFileError`` naming the file, line and column of an aborted COPY."""
    detail = parse_copy_error(error.msg or str(error))
    obj = match_file(detail.file, objects) if detail.file else None
    if obj is None and len(objects) == 1:
        obj = objects[0]
    key = obj.key if obj else f"one of {len(objects)} files ({', '.join(o.key for o in objects)})"
    column = detail.column
    if column and detail.character is not None:
        column += f", character {detail.character}"
    hint = (
        "Nothing of this COPY was loaded and the ledger is unchanged. Fix the file and land it "
        "again (a new file, or the same key with new content)."
    )
    if error.sfqid:
        # VALIDATE() does not support a COPY with a transformation (ours sets _SOURCE_FILE).
        hint += f" Snowflake query id: {error.sfqid}."
    return BadFileError(
        key,
        f"is not a valid {dataset.name} CSV: {detail.problem}",
        hint,
        line=detail.line,
        column=column,
    )


def failed_file_error(
    result: CopyResult, obj: S3Object, dataset: Dataset, query_id: str | None = None
) -> BadFileError:
    """The ``BadFileError`` of a file a ``SKIP_FILE`` COPY did not load, from its result row."""
    hint = RELOAD_HINT
    if query_id:
        hint += f" Snowflake query id: {query_id}."
    problem = result.first_error or f"COPY reported it {result.status}"
    column = result.first_error_column
    if column and (reference := _COLUMN_REF.search(column)):
        column = f"{reference.group('column')} (field {reference.group('position')})"
    return BadFileError(
        obj.key,
        f"is not a valid {dataset.name} CSV: {problem}",
        hint,
        line=result.first_error_line,
        column=column,
    )


def rule_violation(
    dataset: Dataset,
    rule: ValueRule,
    key: str,
    broken: int,
    example: Sequence[Any] | None,
) -> BadFileError:
    """A ``BadFileError`` for a file with ``broken`` rows breaking ``rule``, quoting one.

    Snowflake keeps no line number with a loaded row, so the error names no line; the row it
    quotes is one of the breaking rows, not necessarily the first.
    """
    values = dict(zip(dataset.header, example or (), strict=False))
    value = values.get(rule.column)
    others = f" ({broken:,} rows break this rule; this is one of them)" if broken > 1 else ""
    row = ",".join("" if item is None else str(item) for item in values.values())
    reads = f"; the row reads: {shown(row)}" if example else ""
    return BadFileError(
        key,
        f"{rule.column} is {'empty' if value is None else value}, but must be "
        f"{rule.expectation}{others}{reads}",
        f"RAW only takes valid {dataset.name}: correct or drop the rows that break the rule. "
        + RELOAD_HINT,
        column=rule.column,
    )
