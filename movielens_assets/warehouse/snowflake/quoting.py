"""Values and names written into Snowflake SQL text: literals, identifiers, object names.

S3 keys are data: where they must be part of a statement's text (the ``FILES`` list) they are
escaped string literals; names from configuration (stage, file format) must be plain
identifiers, so a setting cannot smuggle SQL into a statement.
"""

from __future__ import annotations

import re
from datetime import datetime

from movielens_assets.settings import ConfigurationError

CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
"""Characters a string literal spells as Snowflake escape sequences."""
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
STAGE_PATH = re.compile(r"^[A-Za-z0-9_\-./=]*$")


def string_literal(value: str) -> str:
    """A Snowflake single-quoted string literal holding exactly ``value``.

    Inside single quotes Snowflake reads a backslash as an escape and ``''`` as one quote, so
    both are escaped, and control characters are written as escape sequences to keep the
    statement on its lines; everything else (spaces, semicolons, unicode) is literal data.
    """
    escaped = value.replace("\\", "\\\\").replace("'", "''")
    for char, sequence in CONTROL_ESCAPES.items():
        escaped = escaped.replace(char, sequence)
    return "'" + escaped + "'"


def quote_identifier(name: str) -> str:
    """The identifier Snowflake resolves the unquoted ``name`` to (upper case), double-quoted."""
    return '"' + name.upper().replace('"', '""') + '"'


def object_name(name: str) -> str:
    """A validated ``[database.]schema.object`` name, rendered unquoted (so upper case).

    Names come from configuration, not data; anything but plain identifiers is refused rather
    than quoted, so a setting cannot smuggle SQL into a statement.
    """
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(IDENTIFIER.match(part) for part in parts):
        raise ConfigurationError(
            f"{name!r} is not a Snowflake object name of the form [database.]schema.name with "
            "plain identifiers (letters, digits, _ and $)."
        )
    return ".".join(part.upper() for part in parts)


def stage_location(stage: str, path: str = "") -> str:
    """``@STAGE/path/``: a stage reference with a folder inside it."""
    path = path.strip("/")
    if not STAGE_PATH.match(path):
        raise ConfigurationError(
            f"The stage path {path!r} may only hold letters, digits and - _ . / =; rename the "
            "landing prefix (MOVIELENS_S3_PREFIX)."
        )
    return f"@{object_name(stage)}/{path}/" if path else f"@{object_name(stage)}/"


def timestamp_literal(moment: datetime) -> str:
    """``to_timestamp_ntz('2024-05-01 12:00:00.000000')`` for a naive UTC datetime."""
    return f"to_timestamp_ntz({string_literal(moment.strftime('%Y-%m-%d %H:%M:%S.%f'))})"
