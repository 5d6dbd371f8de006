"""DuckDB's errors explained: a ``BadFileError`` naming the file, line and column, and a fix.

DuckDB's CSV errors are reduced to their facts (``explain_csv_error``), a failure of the
warehouse itself is told apart from a bad file (``bad_csv``), and a file breaking a value rule
is read again to name its first breaking row and that row's line (``rule_violation``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from movielens_assets.datasets import Dataset
from movielens_assets.warehouse.base import BadFileError, LoadError, ValueRule
from movielens_assets.warehouse.csv_files import RELOAD_HINT, shown
from movielens_assets.warehouse.duckdb.sql import quote_identifier, read_csv_sql, rules_sql


@dataclass(frozen=True)
class CsvProblem:
    """What is wrong with a file, from a DuckDB CSV error: where, what, and how to fix it."""

    line: int | None
    column: str | None
    problem: str
    hint: str


TYPE_WORDS = {
    "INTEGER": "a whole number (32-bit)",
    "BIGINT": "a whole number",
    "DOUBLE": "a number",
}


def explain_csv_error(message: str, dataset: Dataset | None = None) -> CsvProblem:
    """Line, column, problem and a fix from the message of a DuckDB CSV error.

    DuckDB's message also lists the reader's options and generic advice (relax strict mode,
    ignore errors) that would load a broken file, so only the facts are kept.
    """
    line_match = re.search(r"CSV Error on Line: (\d+)", message)
    line = int(line_match.group(1)) if line_match else None
    original = re.search(r"Original Line: ?([^\n]*)", message)
    reads = f"; the line reads: {shown(original.group(1))}" if original else ""
    header = f" {','.join(dataset.header)!r}" if dataset else ""
    columns = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", message)
    convert = re.search(
        r'converting column "([^"]+)"\. Could not convert string "(.*)" to \'(\w+)\'', message
    )
    too_long = re.search(r"Maximum line size of (\d+) bytes exceeded\. Actual Size:(\d+)", message)
    if columns:
        expected, found = int(columns.group(1)), int(columns.group(2))
        column = None
        if dataset and found < expected:
            column = dataset.header[found]
        elif found > expected:
            column = str(expected + 1)
        return CsvProblem(
            line,
            column,
            f"the line has {found} fields where the header{header} has {expected}{reads}",
            "A line may be cut short (a truncated upload) or hold an unquoted comma; quote "
            "fields that contain commas.",
        )
    if convert:
        column, value, type_name = convert.groups()
        words = TYPE_WORDS.get(type_name.upper(), type_name)
        return CsvProblem(
            line,
            column,
            f'could not convert "{shown(value)}" to {type_name} ({words}){reads}',
            f"{column} must be {words}"
            + (" of unix seconds." if column == "timestamp" else ".")
            + (" The value may also hold bytes that are not UTF-8." if "?" in value else ""),
        )
    if "unterminated quote" in message:
        return CsvProblem(
            line,
            None,
            f"a quoted field is never closed (unterminated quote){reads}",
            'Close the quote, and write a quote inside a quoted field as two quotes ("").',
        )
    if "Invalid unicode" in message:
        return CsvProblem(
            line,
            None,
            f"the line is not valid UTF-8{reads}",
            "Re-export the file as UTF-8 (MovieLens files are UTF-8).",
        )
    if too_long:
        limit, actual = int(too_long.group(1)), int(too_long.group(2))
        return CsvProblem(
            line,
            None,
            f"the line is {actual:,} bytes long, over the limit of {limit:,} bytes{reads}",
            "A field this long is usually a quote that is never closed; fields may hold at "
            f"most {limit // (1024 * 1024)} MiB.",
        )
    if "gzip" in message.lower():
        return CsvProblem(
            line,
            None,
            f"is not a complete gzip file ({first_sentence(message)})",
            "The upload may have been cut short; compress and land the complete file again.",
        )
    if "state machine reached an invalid state" in message:
        return CsvProblem(
            line,
            None,
            "is not RFC 4180 CSV: it mixes line endings or holds a stray carriage return or quote",
            "Re-export the file with one kind of line ending (LF or CRLF) throughout.",
        )
    return CsvProblem(line, None, first_sentence(message), "")


def first_sentence(message: str) -> str:
    """The first line of a DuckDB error without its ``... Error:`` prefix."""
    first = message.strip().splitlines()[0] if message.strip() else message
    return re.sub(r"^[\w ]*Error: ", "", first).strip()


def describe_csv_error(message: str) -> tuple[int | None, str | None, str]:
    """Line, column and a one-line problem statement from a DuckDB CSV error message."""
    problem = explain_csv_error(message)
    return problem.line, problem.column, problem.problem


def is_file_problem(error: duckdb.Error) -> bool:
    """Whether a DuckDB error is about the file being read rather than the warehouse."""
    message = str(error)
    return (
        isinstance(error, duckdb.InvalidInputException | duckdb.ConversionException)
        or "CSV Error" in message
        or (isinstance(error, duckdb.IOException) and "gzip" in message.lower())
    )


def bad_csv(key: str, dataset: Dataset, error: duckdb.Error, local: Path) -> LoadError:
    """The error for a failed ``read_csv``: a ``BadFileError`` if the file is at fault.

    The scratch copy's path means nothing to a reader and is left out of the message.
    """
    message = str(error).replace(f": {local}", "").replace(str(local), key)
    if not is_file_problem(error):
        return LoadError(
            f"{key}: the warehouse failed while loading it ({first_sentence(message)}). "
            "Nothing of this file was loaded; the file itself may be fine, so fix the warehouse "
            "(disk space, memory) and run again."
        )
    problem = explain_csv_error(message, dataset)
    hint = f"{problem.hint} {RELOAD_HINT}" if problem.hint else RELOAD_HINT
    return BadFileError(key, problem.problem, hint, line=problem.line, column=problem.column)


def rule_violation(
    cursor: duckdb.DuckDBPyConnection,
    dataset: Dataset,
    rules: Sequence[ValueRule],
    key: str,
    local: Path,
    broken: int,
) -> BadFileError:
    """A ``BadFileError`` naming the first row of the file that breaks a value rule.

    Only run once a file is known to be bad: it reads the file again, numbering its rows. The
    line is the row's number plus the header, plus the line breaks inside quoted text fields of
    the rows before it.
    """
    checks = ", ".join(rule.sql(quote_identifier(rule.column)) for rule in rules)
    row = cursor.execute(
        f"select ordinality, {', '.join(map(quote_identifier, dataset.header))}, {checks} "
        f"from {read_csv_sql(dataset)} with ordinality "
        f"where not ({rules_sql(rules)}) order by ordinality limit 1",
        {"path": str(local)},
    ).fetchall()[0]
    width = len(dataset.columns)
    ordinality, values = row[0], dict(zip(dataset.header, row[1 : 1 + width], strict=True))
    rule = next(rule for rule, passed in zip(rules, row[1 + width :], strict=True) if not passed)
    line = ordinality + 1
    texts = [column.name for column in dataset.columns if column.duckdb_type == "varchar"]
    if texts and ordinality > 1:
        breaks = " + ".join(
            f"coalesce(length({quote_identifier(name)}) - "
            f"length(replace({quote_identifier(name)}, chr(10), '')), 0)"
            for name in texts
        )
        line += cursor.execute(
            f"select coalesce(sum({breaks}), 0) from {read_csv_sql(dataset)} with ordinality "
            "where ordinality < $row",
            {"path": str(local), "row": ordinality},
        ).fetchall()[0][0]
    value = values[rule.column]
    others = f" ({broken:,} rows break this rule; this is the first)" if broken > 1 else ""
    shown_row = ",".join("" if item is None else str(item) for item in values.values())
    return BadFileError(
        key,
        f"{rule.column} is {'empty' if value is None else value}, but must be "
        f"{rule.expectation}{others}; the row reads: {shown(shown_row)}",
        f"RAW only takes valid {dataset.name}: correct or drop the rows that break the rule. "
        + RELOAD_HINT,
        line=line,
        column=rule.column,
    )
