"""Strawberry's two WebSocket protocol handlers, with Plop's socket rules.

Both protocols: frames go through a ``QueuedWebSocket``; open sockets and active
operations are counted for /metrics; each operation runs with a
``transport.sharing.SocketOperation`` as its root value, so a subscription that
shares its rendering with others writes pre-encoded frames; once connection_init is
accepted the socket is watched under its session (``transport.socket_sessions``) and
closes when the session ends (4401 on graphql-transport-ws, ``connection_error``
then a close on graphql-ws), with nothing more delivered. A socket counts against
its client address's cap from the moment it opens (``transport.socket_limits``). The
legacy ``graphql-ws`` handler also gets the ``connection_init`` deadline, and the
refusal of a second ``connection_init`` (which would take another user, slot and
presence connection for the socket), that strawberry gives only to
graphql-transport-ws: both subprotocols close with 4429, graphql-ws after a
``connection_error``.

Strawberry's private names used here (pinned minor version, tests on both
subprotocols): the handlers' ``websocket``, ``context``, ``schema``, ``operations``
and ``tasks`` attributes, ``run_operation``/``handle_async_results`` (which read
``root_value`` before their first await), ``_send_result_stream`` (graphql-transport-ws:
where an operation handed to its socket goes on to follow its feed), and
``handle_connection_init``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from graphql import GraphQLError, GraphQLSchema, OperationType, get_operation_ast, parse
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from errors import BadUserInput, PlopError, Unauthenticated
from live.account_feed import AccountRenderings
from live.room_feeds import RoomFeeds
from observability.metrics import OPEN_WEBSOCKETS, REFUSED_INIT_TIMEOUT, SOCKETS_REFUSED
from schema.context import Context
from transport.draining import OpenSockets
from transport.persisted_requests import resolved_socket_message
from transport.sharing import SocketOperation, error_payload
from transport.socket_limits import REFUSED_CODE, close_reason, open_socket_slot
from transport.socket_sessions import SocketSessions, WatchedSocket
from transport.socket_writer import OperationFrames, QueuedWebSocket, frame_prefix

logger = logging.getLogger(__name__)

INIT_TIMEOUT_CODE = 4408
INVALID_MESSAGE_CODE = 4400
SESSION_ENDED_CODE = 4401
SESSION_ENDED_REASON = "Session ended: log in again"
# graphql-transport-ws's code and wording (strawberry closes so on that subprotocol).
TOO_MANY_INITS_CODE = 4429
TOO_MANY_INITS_REASON = "Too many initialisation requests"


@dataclass(frozen=True, slots=True)
class LiveTransport:
    """What the socket handlers share in one process: room feeds, session watch, and
    every open socket (for a graceful stop)."""

    feeds: RoomFeeds
    sockets: SocketSessions
    open: OpenSockets = field(default_factory=OpenSockets)
    account_renderings: AccountRenderings[Callable[[Any], Awaitable[str]]] = field(
        default_factory=AccountRenderings
    )


class SocketContext(Context):
    """The context of one socket for its whole life."""

    def __init__(
        self,
        services: Any,
        live: LiveTransport,
        client_address: str,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(services, None, True, client_address, user_agent)
        self.live = live


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
        return "payload.query must be a string (or extensions.persistedQuery name a document)"
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


class _SocketRules:
    """What both protocol handlers add to strawberry's: queue, session, operations."""

    context: Context
    schema: Any
    websocket: Any
    connection_acknowledged: bool

    @property
    def _live(self) -> LiveTransport:
        context = self.context
        assert isinstance(context, SocketContext), "sockets get a SocketContext (context_for)"
        return context.live

    def _start_socket(self) -> None:
        settings = self.context.services.settings
        self._queued = QueuedWebSocket(
            self.websocket, settings.socket_send_queue_frames, settings.socket_send_queue_bytes
        )
        self.websocket = self._queued
        self._live.open.add(self._queued)
        self._watched: WatchedSocket | None = None

    async def _handle_within_caps(self, handle: Callable[[], Awaitable[None]]) -> None:
        """Runs the protocol's ``handle`` if the socket's address is under its cap, and
        gives back whatever the socket took once it ends."""
        OPEN_WEBSOCKETS.inc()
        try:
            if (refused := open_socket_slot(self.context)) is not None:
                await self._refuse(REFUSED_CODE, close_reason(refused.message), refused)
                return
            await handle()
        finally:
            await self._end_socket()

    async def _refuse(self, code: int, reason: str, error: PlopError) -> None:
        """Closes the socket at once with the code (after a ``connection_error`` on
        graphql-ws); what was queued for it is dropped."""
        extensions = {"code": error.code, **error.extensions}
        frame = self._error_frame({"message": error.message, "extensions": extensions})
        await self._queued.end(code, reason, frame)

    def _watch_session(self) -> None:
        session = self.context.session
        if session is not None and self._watched is None:
            self._watched = self._live.sockets.watch(session, self._session_ended)

    def _session_ended(self) -> None:
        logger.info("closing the sockets of an ended session")
        self._ending = asyncio.get_running_loop().create_task(
            self._refuse(
                SESSION_ENDED_CODE, SESSION_ENDED_REASON, Unauthenticated(SESSION_ENDED_REASON)
            )
        )

    async def _named_document(self, message: Any) -> tuple[Any, dict[str, Any] | None]:
        """The message with the document it names by hash as its query (only once the
        socket is accepted), or the error that refuses its operation."""
        if not self.connection_acknowledged:
            return message, None
        return await resolved_socket_message(message, self.context)

    def _error_frame(self, error: Mapping[str, object]) -> Mapping[str, object] | None:
        """The frame that tells the client why the server closes (graphql-ws only)."""
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
            self._live.account_renderings,
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
        self._live_operations: dict[Operation[Context, None], SocketOperation] = {}

    async def handle(self) -> None:
        await self._handle_within_caps(super().handle)

    async def handle_connection_init(self, message: Any) -> None:
        # strawberry closes a second connection_init with 4429 before it looks further.
        await super().handle_connection_init(message)
        # strawberry cancelled its deadline task (or it ran out): done, it would stay
        # referenced here, with its coroutine, for the socket's whole life.
        self.connection_init_timeout_task = None
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
        message, refusal = await self._named_document(message)
        if refusal is not None:
            error: Any = {"id": message["id"], "type": "error", "payload": [refusal]}
            await self.send_message(error)
            return
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
        live = self._operation(
            operation.query, operation.operation_name, operation.variables, frames
        )
        # strawberry reads root_value before its first await: this operation's own.
        self.root_value = live  # type: ignore[assignment]
        self._live_operations[operation] = live
        try:
            await super().run_operation(operation)
        finally:
            del self._live_operations[operation]

    async def _send_result_stream(
        self, operation: Operation[Context, None], result_source: Any
    ) -> None:
        """strawberry's sending of an operation's results, and then, if the operation
        was handed to the socket (its stream ended without a result), the feed it
        follows; strawberry completes the operation once this returns, as it
        completes any stream that ends. An error that ends the feed goes first, in a
        ``next``, as strawberry sends a stream's error."""
        await super()._send_result_stream(operation, result_source)
        live = self._live_operations.get(operation)
        if live is None or live.follow is None:
            return
        try:
            await live.follow()
        except Exception as error:  # the client sees it, as a stream's error
            if self.operations.get(operation.id) is operation:
                await operation.send_operation_message(
                    cast(Any, {"id": operation.id, "type": "next", "payload": error_payload(error)})
                )


class LegacyWSHandler(_SocketRules, BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (the legacy subscriptions-transport-ws protocol)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_socket()
        self._init_received = False
        self._live_operations: dict[str, SocketOperation] = {}
        # A timer, not a task that sleeps: cancelled once connection_init is accepted,
        # it leaves nothing behind on the socket.
        self._init_deadline: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        await self._handle_within_caps(self._handle_with_deadline)

    async def _handle_with_deadline(self) -> None:
        timeout = self.context.services.settings.connection_init_timeout_seconds
        loop = asyncio.get_running_loop()
        self._init_deadline = loop.call_later(timeout, self._close_without_init)
        try:
            await super().handle()
        finally:
            self._init_deadline.cancel()
            self._init_deadline = None

    async def handle_connection_init(self, message: Any) -> None:
        if self._init_received:
            error = BadUserInput("connection_init was already received on this socket")
            await self._refuse(TOO_MANY_INITS_CODE, TOO_MANY_INITS_REASON, error)
            return
        self._init_received = True
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            if self._init_deadline is not None:
                self._init_deadline.cancel()
                self._init_deadline = None
            self._watch_session()

    def _error_frame(self, error: Mapping[str, object]) -> Mapping[str, object] | None:
        return {"type": "connection_error", "payload": error}

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            await self.websocket.close(INVALID_MESSAGE_CODE, "a message must be a JSON object")
            return
        await super().handle_message(cast(Any, message))

    async def handle_start(self, message: Any) -> None:
        message, document_refusal = await self._named_document(message)
        if document_refusal is not None:
            error: Any = {"type": "error", "id": message["id"], "payload": document_refusal}
            await self.send_message(error)
            return
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
        live = self._operation(query, operation_name, variables, frames)
        # strawberry reads root_value before its first await: this operation's own.
        self.root_value = live  # type: ignore[assignment]
        self._live_operations[operation_id] = live
        try:
            await super().handle_async_results(operation_id, query, operation_name, variables)
        finally:
            del self._live_operations[operation_id]
        if live.follow is None:
            return
        assert task is not None
        # strawberry forgot the operation as its stream ended; the socket serves it
        # now, and a stop cancels this task as it would have cancelled strawberry's.
        self.tasks[operation_id] = task
        error: Exception | None = None
        try:
            await live.follow()
        except asyncio.CancelledError:
            # Stopped (or the socket closed): strawberry answers complete, then ends.
            await self.send_message({"type": "complete", "id": operation_id})
            return
        except Exception as exc:  # the client sees it, as a stream's error
            error = exc
        if self.tasks.get(operation_id) is not task:
            return  # the client stopped it meanwhile
        del self.tasks[operation_id]
        if error is not None:
            data: Any = {"type": "data", "id": operation_id, "payload": error_payload(error)}
            await self.send_message(data)
        await self.send_message({"type": "complete", "id": operation_id})

    async def send_message(self, message: Any) -> None:
        # The complete strawberry sends when a stream handed to the socket ends: the
        # socket completes the operation itself, once its feed ends.
        if message.get("type") == "complete":
            live = self._live_operations.get(message.get("id"))
            if live is not None and live.follow is not None:
                return
        await super().send_message(message)

    def _close_without_init(self) -> None:
        self._init_deadline = None
        if not self.connection_acknowledged:
            SOCKETS_REFUSED.labels(reason=REFUSED_INIT_TIMEOUT).inc()
            self._closing = asyncio.get_running_loop().create_task(
                self.websocket.close(INIT_TIMEOUT_CODE, "Connection initialisation timeout")
            )
