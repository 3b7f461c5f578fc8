"""Strawberry's two WebSocket protocol handlers, with Plop's socket rules.

Both protocols: frames go through a ``QueuedWebSocket``; open sockets and active
operations are counted for /metrics; each operation runs with a
``transport.sharing.SocketOperation`` as its root value, so a subscription that
shares its rendering with others writes pre-encoded frames; once connection_init is
accepted the socket is watched under its session (``transport.sessions``) and
closes when the session ends (4401 on graphql-transport-ws, ``connection_error``
then a close on graphql-ws), with nothing more delivered. The legacy ``graphql-ws``
handler also gets the ``connection_init`` deadline that strawberry gives only to
graphql-transport-ws.

Strawberry's private names used here (pinned minor version, tests on both
subprotocols): the handlers' ``websocket``, ``context``, ``schema``, ``operations``
and ``tasks`` attributes, ``run_operation``/``handle_async_results`` (which read
``root_value`` before their first await), and ``handle_connection_init``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from graphql import GraphQLError, GraphQLSchema, OperationType, get_operation_ast, parse
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from observability.metrics import OPEN_WEBSOCKETS, REFUSED_INIT_TIMEOUT, SOCKETS_REFUSED
from schema.context import Context
from transport.draining import OpenSockets
from transport.feeds import RoomFeeds
from transport.sessions import SocketSessions, WatchedSocket
from transport.sharing import SocketOperation
from transport.socket_writer import QueuedWebSocket

logger = logging.getLogger(__name__)

INIT_TIMEOUT_CODE = 4408
INVALID_MESSAGE_CODE = 4400
SESSION_ENDED_CODE = 4401
SESSION_ENDED_REASON = "Session ended: log in again"


@dataclass(frozen=True, slots=True)
class LiveTransport:
    """What the socket handlers share in one process: room feeds, session watch, and
    every open socket (for a graceful stop)."""

    feeds: RoomFeeds
    sockets: SocketSessions
    open: OpenSockets = field(default_factory=OpenSockets)


class SocketContext(Context):
    """The context of one socket for its whole life."""

    def __init__(self, services: Any, live: LiveTransport, client_address: str) -> None:
        super().__init__(services, token=None, over_websocket=True, client_address=client_address)
        self.live = live


class OperationFrames:
    """One operation's frames around payloads rendered once for many sockets."""

    __slots__ = ("_is_open", "_prefix", "_socket")

    def __init__(self, socket: QueuedWebSocket, prefix: str, is_open: Callable[[], bool]) -> None:
        self._socket = socket
        self._prefix = prefix
        self._is_open = is_open

    def deliver(self, payload: str) -> bool:
        # A client that completed the operation gets nothing more for its id.
        return self._is_open() and self._socket.offer(f"{self._prefix}{payload}}}")


def operation_problem(message: object) -> str | None:
    """What is wrong with a subscribe/start message's shape, or None if it is sound.

    strawberry reads these fields without checking their types: a query that is not
    a string would fail deep in the parser, with no answer to the client.
    """
    if not isinstance(message, dict) or not isinstance(message.get("id"), str):
        return "the message needs a string id"
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return "the message needs an object payload"
    if not isinstance(payload.get("query"), str):
        return "payload.query must be a string"
    if not isinstance(payload.get("operationName"), str | None):
        return "payload.operationName must be a string or null"
    if not isinstance(payload.get("variables"), dict | None):
        return "payload.variables must be an object or null"
    return None


# Sockets send the same few documents: each is parsed here once, not per operation.
@lru_cache(maxsize=1_024)
def answers_once(query: str, operation_name: str | None) -> bool:
    """Whether the operation is a query or a mutation (one answer), not a subscription."""
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except GraphQLError:
        return False  # strawberry answers the syntax error itself, at once
    return operation is not None and operation.operation != OperationType.SUBSCRIPTION


def frame_prefix(fields: dict[str, str]) -> str:
    """The frame's text up to its payload, which follows with the closing brace."""
    return json.dumps({**fields, "payload": None}).removesuffix("null}")


class _SocketRules:
    """What both protocol handlers add to strawberry's: queue, session, operations."""

    context: Context
    schema: Any
    websocket: Any

    @property
    def _live(self) -> LiveTransport:
        context = self.context
        assert isinstance(context, SocketContext), "sockets get a SocketContext (context_for)"
        return context.live

    def _start_socket(self) -> None:
        self._queued = QueuedWebSocket(
            self.websocket, self.context.services.settings.socket_send_queue_frames
        )
        self.websocket = self._queued
        self._live.open.add(self._queued)
        self._watched: WatchedSocket | None = None

    def _watch_session(self) -> None:
        session = self.context.session
        if session is not None and self._watched is None:
            self._watched = self._live.sockets.watch(session, self._session_ended)

    def _session_ended(self) -> None:
        logger.info("closing the sockets of an ended session")
        self._ending = asyncio.get_running_loop().create_task(
            self._queued.end(SESSION_ENDED_CODE, SESSION_ENDED_REASON, self._ended_frame())
        )

    def _ended_frame(self) -> Mapping[str, object] | None:
        return None

    def _operation(
        self, query: str, operation_name: str | None, variables: Any, frames: OperationFrames
    ) -> SocketOperation:
        if answers_once(query, operation_name):
            # A graceful stop lets it answer before the socket closes (app.shutdown).
            task = asyncio.current_task()
            assert task is not None
            self._queued.answering(task)
        graphql_schema: GraphQLSchema = self.schema._schema  # strawberry's graphql-core schema
        return SocketOperation(
            query,
            operation_name,
            variables,
            frames,
            graphql_schema,
            self.context,
            self._live.feeds,
        )

    async def _end_socket(self) -> None:
        OPEN_WEBSOCKETS.dec()
        self.context.release_socket()
        self._live.open.discard(self._queued)
        if self._watched is not None:
            self._live.sockets.unwatch(self._watched)
        await self._queued.shutdown()
        try:
            await self.context.end_presence()
        except Exception:
            # The sweep takes the user OFFLINE when this connection expires instead.
            logger.exception("presence unregistration failed")


class TransportWSHandler(_SocketRules, BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws (the current protocol)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_socket()

    async def handle(self) -> None:
        OPEN_WEBSOCKETS.inc()
        try:
            await super().handle()
        finally:
            await self._end_socket()

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._watch_session()

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            await self.handle_invalid_message("a message must be a JSON object")
            return
        await super().handle_message(cast(Any, message))

    async def handle_connection_init_timeout(self) -> None:
        await super().handle_connection_init_timeout()
        if self.connection_timed_out:
            SOCKETS_REFUSED.labels(reason=REFUSED_INIT_TIMEOUT).inc()

    async def handle_subscribe(self, message: Any) -> None:
        # The protocol closes on an invalid message (4400), as strawberry does for others.
        if (problem := operation_problem(message)) is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        prefix = frame_prefix({"id": operation.id, "type": "next"})
        frames = OperationFrames(
            self._queued, prefix, lambda: self.operations.get(operation.id) is operation
        )
        # strawberry reads root_value before its first await: this operation's own.
        self.root_value = self._operation(  # type: ignore[assignment]
            operation.query, operation.operation_name, operation.variables, frames
        )
        await super().run_operation(operation)


class LegacyWSHandler(_SocketRules, BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (the legacy subscriptions-transport-ws protocol)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_socket()

    async def handle(self) -> None:
        OPEN_WEBSOCKETS.inc()
        deadline = asyncio.create_task(self._close_without_init())
        try:
            await super().handle()
        finally:
            deadline.cancel()
            with suppress(asyncio.CancelledError):
                await deadline
            await self._end_socket()

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._watch_session()

    def _ended_frame(self) -> Mapping[str, object] | None:
        error = {"message": SESSION_ENDED_REASON, "extensions": {"code": "UNAUTHENTICATED"}}
        return {"type": "connection_error", "payload": error}

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            await self.websocket.close(INVALID_MESSAGE_CODE, "a message must be a JSON object")
            return
        await super().handle_message(cast(Any, message))

    async def handle_start(self, message: Any) -> None:
        if (problem := operation_problem(message)) is not None:
            operation_id = message.get("id") if isinstance(message.get("id"), str) else None
            error = {"message": problem, "extensions": {"code": "BAD_USER_INPUT"}}
            refusal: Any = {"type": "error", "id": operation_id, "payload": error}
            await self.send_message(refusal)
            return
        await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        task = asyncio.current_task()
        prefix = frame_prefix({"type": "data", "id": operation_id})
        frames = OperationFrames(self._queued, prefix, lambda: self.tasks.get(operation_id) is task)
        # strawberry reads root_value before its first await: this operation's own.
        self.root_value = self._operation(  # type: ignore[assignment]
            query, operation_name, variables, frames
        )
        await super().handle_async_results(operation_id, query, operation_name, variables)

    async def _close_without_init(self) -> None:
        timeout = self.context.services.settings.connection_init_timeout_seconds
        await asyncio.sleep(timeout)
        if not self.connection_acknowledged:
            SOCKETS_REFUSED.labels(reason=REFUSED_INIT_TIMEOUT).inc()
            await self.websocket.close(INIT_TIMEOUT_CODE, "Connection initialisation timeout")
