"""The one place where errors become ``extensions.code``.

A ``PlopError`` keeps its message and gets its code. A backend that is down or slow
becomes UNAVAILABLE. An error graphql-core raised itself (syntax, validation, a limit)
is the client's: BAD_USER_INPUT, also when it wraps another of graphql-core's own
(a variable that does not coerce). Anything else is logged with its stack and sent as
INTERNAL with a fixed message, so no internals leak.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from graphql import GraphQLError
from pymongo.errors import ConnectionFailure, ExecutionTimeout, ServerSelectionTimeoutError
from pymongo.errors import NetworkTimeout as MongoNetworkTimeout
from redis.exceptions import (
    ClusterDownError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import StreamExecutionResult

from errors import PlopError, Unavailable

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Internal server error"

# Library errors that mean "a backend is down or too slow", not "Plop is broken".
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    ServerSelectionTimeoutError,
    MongoNetworkTimeout,
    ExecutionTimeout,
    RedisConnectionError,
    RedisTimeoutError,
    # Redis Cluster electing a new master, or not reachable at all.
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
    TimeoutError,
    asyncio.TimeoutError,
)


def plop_error_for(exc: BaseException) -> PlopError | None:
    """The PlopError an exception stands for, or None if it is a bug."""
    if isinstance(exc, PlopError):
        return exc
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return Unavailable("a backend service is unavailable; retry shortly")
    return None


def _cause(error: GraphQLError) -> Exception | None:
    """What an error stands for, under the GraphQLErrors that wrap it.

    graphql-core wraps its own verdicts in another GraphQLError: a variable that
    does not coerce says "Variable '$n' has invalid value" around "Int cannot
    represent non-integer value". Such a chain that ends in no other exception is
    graphql-core's judgement of the request, not a bug.
    """
    original = error.original_error
    while isinstance(original, GraphQLError):
        original = original.original_error
    return original


def with_code(error: GraphQLError) -> GraphQLError:
    """The error as the client should see it, with ``extensions.code``."""
    original = _cause(error)
    if original is None:
        code = (error.extensions or {}).get("code") or "BAD_USER_INPUT"
        return _rebuild(error, error.message, code)
    if isinstance(original, InvalidOperationTypeError | CannotGetOperationTypeError):
        return _rebuild(error, error.message, "BAD_USER_INPUT")
    if (plop_error := plop_error_for(original)) is not None:
        if plop_error is not original:
            logger.warning("backend unavailable", extra={"error": repr(original)})
        return _rebuild(error, plop_error.message, plop_error.code, plop_error.extensions)
    logger.error("unexpected error", exc_info=original, extra={"path": error.path})
    return _rebuild(error, INTERNAL_MESSAGE, "INTERNAL")


def _rebuild(
    error: GraphQLError, message: str, code: str, extra: dict[str, object] | None = None
) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), **(extra or {}), "code": code},
    )


class ErrorCodes(SchemaExtension):
    """Applies ``with_code`` to every error of every result, streamed ones included.

    ``with_code`` is idempotent (a rebuilt error has no original and keeps its code),
    so a result that both hooks see is not harmed.
    """

    @staticmethod
    def _rewrite(result: object) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [with_code(error) for error in errors]  # type: ignore[attr-defined]

    def on_operation(self) -> Iterator[None]:
        yield
        self._rewrite(self.execution_context.result)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._rewrite(result)
        yield None
