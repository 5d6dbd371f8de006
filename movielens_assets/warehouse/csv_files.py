"""What both loaders check and say about a CSV file, so DuckDB and Snowflake reject alike."""

from movielens_assets.datasets import Dataset
from movielens_assets.warehouse.base import BadFileError

SHOWN_LINE_CHARS = 120
"""How much of an offending line an error message quotes."""
RELOAD_HINT = (
    "Nothing of this file was loaded. Fix the file and land it again (a new file, or the same "
    "key with new content)."
)


def shown(text: str) -> str:
    """An offending line as an error message quotes it: control characters escaped, shortened."""
    escaped = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text[: SHOWN_LINE_CHARS + 1]
    )
    return escaped[:SHOWN_LINE_CHARS] + " [...]" if len(text) > SHOWN_LINE_CHARS else escaped


def check_not_empty(dataset: Dataset, key: str, size: int) -> None:
    """Raise ``BadFileError`` for a file of 0 bytes."""
    if size == 0:
        raise BadFileError(
            key,
            "is empty (0 bytes)",
            f"A {dataset.name} file must start with the header line "
            f"{','.join(dataset.header)!r}. {RELOAD_HINT}",
        )


def check_header(dataset: Dataset, key: str, header_line: str) -> None:
    """Raise ``BadFileError`` unless the header is exactly the GroupLens header."""
    expected = ",".join(dataset.header)
    if header_line == expected:
        return
    hint = f"A {dataset.name} file must start with the header line {expected!r}. {RELOAD_HINT}"
    if not header_line:
        raise BadFileError(key, "has no header line (the first line is empty)", hint, line=1)
    found = header_line.split(",")
    for position, (got, want) in enumerate(zip(found, dataset.header, strict=False), start=1):
        if got != want:
            raise BadFileError(
                key,
                f"header has {shown(got)!r} where {want!r} was expected",
                hint,
                line=1,
                column=f"{position}",
            )
    raise BadFileError(
        key,
        f"header has {len(found)} columns, {dataset.name} files have {len(dataset.header)}",
        hint,
        line=1,
    )
