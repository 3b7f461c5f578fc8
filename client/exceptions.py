"""The client's errors, and the one place where gql's and the network's errors become them.

PlopClientError      code = the server's extensions.code (UNAUTHENTICATED, FORBIDDEN,
│                    NOT_FOUND, BAD_USER_INPUT, CONFLICT, RATE_LIMITED, UNAVAILABLE,
│                    INTERNAL); ``retryable`` for UNAVAILABLE and RATE_LIMITED
├── PlopSyncTokenExpired code = BAD_USER_INPUT with extensions.reason
│                        SYNC_TOKEN_EXPIRED: the server no longer holds what followed
│                        the token; the app starts over without one
└── PlopTransportError   code = TRANSPORT: the server could not be reached ("cannot
                         reach URL: connection refused"), or answered outside GraphQL;
                         retryable unless it was an HTTP 4xx
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from typing import Any, TypeVar

from gql.transport.exceptions import (
    TransportError,
    TransportQueryError,
    TransportServerError,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

TRANSPORT = "TRANSPORT"
# Codes that say "try again later", not "this request is wrong".
RETRYABLE_CODES = frozenset({"UNAVAILABLE", "RATE_LIMITED"})
# graphql-transport-ws closes a socket whose connection_init was refused with 4403,
# whatever the reason; the client asks the server over HTTP what the reason was.
REFUSED_AT_INIT_CLOSE_CODE = 4403
# Close codes after which reconnecting cannot help: the client sent something wrong.
PROTOCOL_VIOLATION_CLOSE_CODES = frozenset({4400, 4401, 4409})
# HTTP statuses that say "later", not "never".
RETRYABLE_HTTP_STATUSES = frozenset({408, 429})
_CONNECTION_ERROR_PREFIX = "Server error: "
SYNC_TOKEN_EXPIRED = "SYNC_TOKEN_EXPIRED"

E = TypeVar("E", bound=BaseException)


class PlopClientError(Exception):
    """An error a Plop call ended with; ``code`` says which."""

    def __init__(self, code: str, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable


class PlopSyncTokenExpired(PlopClientError):
    """The sync token is older than the server keeps events for: nothing can resume
    from it, so the app drops what it derived from the stream and starts over."""

    def __init__(self, message: str) -> None:
        super().__init__("BAD_USER_INPUT", message, retryable=False)
        self.reason = SYNC_TOKEN_EXPIRED


class PlopTransportError(PlopClientError):
    """The request did not get a GraphQL answer: network down, server gone, proxy error.

    ``close_code`` is the WebSocket close code when a socket was closed by the server.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        close_code: int | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(TRANSPORT, message, retryable=retryable)
        self.close_code = close_code
        # True when no connection was made at all (refused, unknown host, timed out).
        self.unreachable = unreachable


# What a request can fail with below GraphQL: gql's transport errors, timeouts (connect,
# connection_ack, execute) and socket errors that escaped gql's wrapping.
TRANSPORT_FAILURES: tuple[type[BaseException], ...] = (TransportError, TimeoutError, OSError)


def error_from_graphql(errors: Sequence[object] | None, fallback: str) -> PlopClientError:
    """The first GraphQL error of a result, as a PlopClientError."""
    first = errors[0] if errors else None
    if not isinstance(first, dict):
        return PlopClientError("INTERNAL", fallback)
    extensions = first.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    message = first.get("message")
    reason = extensions.get("reason") if isinstance(extensions, dict) else None
    if code == "BAD_USER_INPUT" and reason == SYNC_TOKEN_EXPIRED:
        return PlopSyncTokenExpired(message if isinstance(message, str) else fallback)
    return PlopClientError(
        code if isinstance(code, str) else "INTERNAL",
        message if isinstance(message, str) else fallback,
    )


def translate(exc: BaseException, url: str | None = None) -> PlopClientError:
    """The PlopClientError that a failure of gql (or below it) stands for; ``url``, the
    address that was tried, is named in the message of an error below GraphQL."""
    if isinstance(exc, PlopClientError):
        return exc
    if isinstance(exc, TransportQueryError):
        return error_from_graphql(exc.errors, str(exc))
    server = url or "the server"
    if isinstance(exc, TransportServerError):
        if (refusal := _connection_error_payload(str(exc))) is not None:
            # graphql-ws (legacy) refuses a connection_init with the error itself.
            return error_from_graphql([refusal], "the server refused the connection")
        if _refused_for_good(exc.code):
            return PlopTransportError(f"HTTP {exc.code} from {server}", retryable=False)
        return PlopTransportError(f"{server}: {exc or type(exc).__name__}")
    handshake = _in_chain(exc, InvalidStatus)
    if handshake is not None and _refused_for_good(status := handshake.response.status_code):
        return PlopTransportError(
            f"HTTP {status} to the WebSocket handshake at {server}", retryable=False
        )
    close_code = websocket_close_code(exc)
    if close_code in PROTOCOL_VIOLATION_CLOSE_CODES:
        return PlopTransportError(
            f"the server closed the socket ({close_code})", retryable=False, close_code=close_code
        )
    if close_code is None and (reason := unreachable_reason(exc)) is not None:
        return PlopTransportError(f"cannot reach {server}: {reason}", unreachable=True)
    return PlopTransportError(f"{server}: {exc or type(exc).__name__}", close_code=close_code)


def unreachable_reason(exc: BaseException) -> str | None:
    """Why no connection was made, from the socket error with an errno that caused
    ``exc``, if any: "connection refused", "name or service not known"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and isinstance(current.errno, int):
            # asyncio's connect errors carry their own text ("Connect call failed
            # ..."); the errno's standard wording reads better. A resolver error has
            # a negative errno and its text in strerror.
            errno = current.errno
            text = os.strerror(errno) if errno > 0 else str(current.strerror or "")
            return text[:1].lower() + text[1:] if text else None
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def websocket_close_code(exc: BaseException) -> int | None:
    """The close code the server sent, if ``exc`` comes from a closed WebSocket."""
    closed = _in_chain(exc, ConnectionClosed)
    return closed.rcvd.code if closed is not None and closed.rcvd is not None else None


def _refused_for_good(status: int | None) -> bool:
    """An HTTP 4xx other than "too early" or "too many": asking again will not help."""
    return status is not None and 400 <= status < 500 and status not in RETRYABLE_HTTP_STATUSES


def _in_chain(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of ``kind`` among exc and the exceptions that caused it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _connection_error_payload(message: str) -> dict[str, Any] | None:
    """The payload of a legacy ``connection_error``, which gql keeps only as its repr."""
    quoted = message.removeprefix(_CONNECTION_ERROR_PREFIX)
    if quoted == message or len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
        return None
    try:
        payload = ast.literal_eval(quoted[1:-1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
