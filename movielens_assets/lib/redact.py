"""Redacting secrets from text bound for logs, metadata and error messages.

Credentials come only from the environment, but they can still reach text that Dagster stores:
botocore names the endpoint URL (with any ``user:password@`` in it) when it cannot connect, a
presigned URL carries its signature in the query string, a connection string carries
``password=``. ``redact`` replaces those parts with ``***`` and keeps the rest readable (scheme,
user, host, path, the names of the parameters), so an error still says where it happened.

Only the secret parts are replaced; ``redact`` is pure. ``redact_secrets`` also masks the values
of the secret variables of this environment (``settings.SECRET_VARIABLES``) wherever they occur.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from movielens_assets.settings import secret_environment_values

MASK = "***"

SECRET_PARAMETERS = (
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "awsaccesskeyid",
    "signature",
    "sig",
    "x-goog-signature",
    "x-goog-credential",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "private_key_passphrase",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "session_token",
    "secret",
    "client_secret",
    "secret_access_key",
    "aws_secret_access_key",
    "api_key",
    "apikey",
)
"""Names (any case) of query parameters and connection-string fields whose value is secret."""

MIN_SECRET_LENGTH = 8
"""Shorter values of ``SECRET_VARIABLES`` are not masked: they would hide ordinary words."""

# scheme://userinfo@host: the authority runs to the first / ? # or blank, its userinfo to the
# last @ (passwords with an unencoded @ are common in practice).
_AUTHORITY = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#\s\"'<>]*)")
_NAMES = "|".join(re.escape(name) for name in SECRET_PARAMETERS)
_VALUE = r"(?P<value>\"[^\"]*\"|'[^']*'|[^&;,\s\"'<>)}\]]+)"
# name=value (query strings, connection strings) and 'name': value (dicts, JSON).
_PARAMETER = re.compile(
    rf"(?P<name>(?<![\w\-])(?:{_NAMES}))(?P<equals>\s*=\s*){_VALUE}", re.IGNORECASE
)
_FIELD = re.compile(
    rf"(?P<name>(?P<quote>[\"'])(?:{_NAMES})(?P=quote))(?P<equals>\s*:\s*){_VALUE}",
    re.IGNORECASE,
)


def _redact_authority(match: re.Match[str]) -> str:
    authority = match.group("authority")
    if "@" not in authority:
        return match.group(0)
    userinfo, host = authority.rsplit("@", 1)
    if ":" not in userinfo:
        return match.group(0)  # a user name alone is not secret
    user = userinfo.split(":", 1)[0]
    return f"{match.group('scheme')}{user}:{MASK}@{host}"


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group('name')}{match.group('equals')}{quote}{MASK}{quote}"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the secret parts of every URI and connection string in it replaced.

    - the password of ``scheme://user:password@host`` (the user and host are kept);
    - the value of every ``SECRET_PARAMETERS`` parameter, in a query string
      (``?X-Amz-Signature=...``), a connection string (``password=...;``) or a dict or JSON
      text (``'password': '...'``);
    - every occurrence of each of ``secrets`` (values known to be secret).
    """
    redacted = _AUTHORITY.sub(_redact_authority, text)
    for pattern in (_PARAMETER, _FIELD):
        redacted = pattern.sub(_mask_value, redacted)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        redacted = redacted.replace(secret, MASK)
    return redacted


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of ``SECRET_VARIABLES`` set in ``environ`` (default: this process's)."""
    values = secret_environment_values(environ)
    return [value for value in values if len(value) >= MIN_SECRET_LENGTH]


def redact_secrets(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``redact`` with the secret values of ``environ`` (default: this process's) masked too."""
    return redact(text, secret_values(environ))


def redact_json(value: Any) -> Any:
    """Every string inside a JSON-like value (dicts, lists) passed through ``redact_secrets``."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, Mapping):
        return {key: redact_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(item) for item in value]
    return value


class RedactedError(RuntimeError):
    """An error whose message, or a cause's, carried a secret: their messages, redacted."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and its causes, as a traceback shows them."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


@contextmanager
def redacted_errors() -> Iterator[None]:
    """Re-raise an error whose message carries a secret as ``RedactedError``, redacted.

    Dagster stores a failed step's or tick's error with its whole chain of causes, so the
    original cannot be chained: the new error's message names the original error and each of
    its causes (type and redacted message), one a line. Errors whose messages (and their
    causes') carry no secret are re-raised unchanged.
    """
    try:
        yield
    except Exception as error:
        messages = [f"{type(item).__name__}: {item}" for item in _chain(error)]
        redacted = [redact_secrets(message) for message in messages]
        if redacted == messages:
            raise
        raise RedactedError("\n  caused by ".join(redacted)) from None


class RedactedLog:
    """A logger (Dagster's ``context.log`` or ``logging.Logger``) that redacts each message."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def debug(self, message: str) -> None:
        """Log at DEBUG, redacted."""
        self._log.debug(redact_secrets(str(message)))

    def info(self, message: str) -> None:
        """Log at INFO, redacted."""
        self._log.info(redact_secrets(str(message)))

    def warning(self, message: str) -> None:
        """Log at WARNING, redacted."""
        self._log.warning(redact_secrets(str(message)))

    def error(self, message: str) -> None:
        """Log at ERROR, redacted."""
        self._log.error(redact_secrets(str(message)))
