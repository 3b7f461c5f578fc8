"""Plop's error tree. Each error carries the ``extensions.code`` a client sees.

    PlopError
    ├── Unauthenticated   UNAUTHENTICATED  no valid session token
    ├── Forbidden         FORBIDDEN        authenticated, but not allowed
    ├── NotFound          NOT_FOUND        no such object
    ├── BadUserInput      BAD_USER_INPUT   the request's values are not acceptable
    ├── Conflict          CONFLICT         clashes with existing state
    ├── RateLimited       RATE_LIMITED     too many requests; retry after retryAfter s
    ├── Unavailable       UNAVAILABLE      a backend is down or timed out
    └── PersistedQueryRefused              a persisted query the server cannot run
        ├── PersistedQueryNotFound     PERSISTED_QUERY_NOT_FOUND      hash unknown: send the text
        ├── PersistedQueryNotSupported PERSISTED_QUERY_NOT_SUPPORTED  APQ is off: send the text
        └── PersistedQueryNotAllowed   PERSISTED_QUERY_NOT_ALLOWED    not a trusted document
    ConfigError                            bad settings at start-up (not sent to clients)
    └── BackendUnreachable                 a backend did not answer at start-up

Anything else that escapes a resolver is reported as INTERNAL with a masked message.
"""

from __future__ import annotations


class PlopError(Exception):
    """An error whose message is safe and useful to show to the client."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def extensions(self) -> dict[str, object]:
        """What the client gets in ``extensions`` besides the code."""
        return {}


class Unauthenticated(PlopError):
    code = "UNAUTHENTICATED"


class Forbidden(PlopError):
    code = "FORBIDDEN"


class NotFound(PlopError):
    code = "NOT_FOUND"


class BadUserInput(PlopError):
    code = "BAD_USER_INPUT"


class Conflict(PlopError):
    code = "CONFLICT"


class RateLimited(PlopError):
    """Refused before doing anything; ``retry_after`` says when trying again may work.

    Without ``retry_after`` (a cap on what is open rather than on a rate) the client
    retries once it closed something.
    """

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def extensions(self) -> dict[str, object]:
        return {} if self.retry_after is None else {"retryAfter": self.retry_after}


class Unavailable(PlopError):
    code = "UNAVAILABLE"


class PersistedQueryRefused(PlopError):
    """A request naming a document by its hash that is not run; nothing was executed."""


class PersistedQueryNotFound(PersistedQueryRefused):
    """The hash names no document held here; the client sends the text with its hash.

    The message is Apollo's, which its persisted-queries link looks for.
    """

    code = "PERSISTED_QUERY_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotFound")


class PersistedQueryNotSupported(PersistedQueryRefused):
    """Automatic persisted queries are off; the message is Apollo's, whose link then
    stops sending hashes alone."""

    code = "PERSISTED_QUERY_NOT_SUPPORTED"

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotSupported")


class PersistedQueryNotAllowed(PersistedQueryRefused):
    """The server runs trusted documents only, and this is not one of them."""

    code = "PERSISTED_QUERY_NOT_ALLOWED"


class ConfigError(Exception):
    """Settings that cannot work; raised at start-up, never sent to a client."""


class BackendUnreachable(ConfigError):
    """A backend that could not be reached at start-up: which one, where, and why."""

    def __init__(self, backend: str, url: str, reason: str) -> None:
        super().__init__(f"{backend} is unreachable at {redact_url(url)}: {reason}")
        self.backend = backend
        self.url = url
        self.reason = reason


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit for logs."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not separator or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}"


# A library's message can carry a whole topology description; the start is what says why.
_DESCRIBE_CHARS = 200


def describe(exc: BaseException) -> str:
    """An exception on one line: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    first = lines[0] if len(lines[0]) <= _DESCRIBE_CHARS else lines[0][:_DESCRIBE_CHARS] + "..."
    return f"{type(exc).__name__}: {first}"
