"""Plop's error tree. Each error carries the ``extensions.code`` a client sees.

    PlopError
    ├── Unauthenticated   UNAUTHENTICATED  no valid session token
    ├── Forbidden         FORBIDDEN        authenticated, but not allowed
    ├── NotFound          NOT_FOUND        no such object
    ├── BadUserInput      BAD_USER_INPUT   the request's values are not acceptable
    ├── Conflict          CONFLICT         clashes with existing state
    ├── RateLimited       RATE_LIMITED     too many requests; retry after retryAfter s
    └── Unavailable       UNAVAILABLE      a backend is down or timed out
    ConfigError                            bad settings at start-up (not sent to clients)

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


class ConfigError(Exception):
    """Settings that cannot work; raised at start-up, never sent to a client."""
