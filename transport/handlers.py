"""Strawberry's two WebSocket protocol handlers, with Plop's socket rules.

Both protocols: frames go through a ``QueuedWebSocket``; open sockets and active
operations are counted for /metrics; each operation's task carries its request and
a ``OperationFrames`` sink in ``LIVE_OPERATION``, so a subscription that shares its
rendering with others (``schema.shared_execution``) writes pre-encoded frames. The
legacy ``graphql-ws`` handler also gets the ``connection_init`` deadline that
strawberry gives only to graphql-transport-ws.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from observability.metrics import OPEN_WEBSOCKETS
from schema.context import Context
from schema.shared_execution import LIVE_OPERATION, LiveOperation
from transport.socket_writer import QueuedWebSocket

logger = logging.getLogger(__name__)

INIT_TIMEOUT_CODE = 4408


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


def frame_prefix(fields: dict[str, str]) -> str:
    """The frame's text up to its payload, which follows with the closing brace."""
    return json.dumps({**fields, "payload": None}).removesuffix("null}")


def _queue_frames(handler: Any) -> QueuedWebSocket:
    context: Context = handler.context
    queued = QueuedWebSocket(handler.websocket, context.services.settings.socket_send_queue_frames)
    handler.websocket = queued
    return queued


async def _end_presence(context: Context) -> None:
    try:
        await context.end_presence()
    except Exception:
        # The sweep takes the user OFFLINE when this connection expires instead.
        logger.exception("presence unregistration failed")


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws (the current protocol)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued = _queue_frames(self)

    async def handle(self) -> None:
        OPEN_WEBSOCKETS.inc()
        try:
            await super().handle()
        finally:
            OPEN_WEBSOCKETS.dec()
            self.context.release_socket()
            await self._queued.shutdown()
            await _end_presence(self.context)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        prefix = frame_prefix({"id": operation.id, "type": "next"})
        frames = OperationFrames(
            self._queued, prefix, lambda: self.operations.get(operation.id) is operation
        )
        LIVE_OPERATION.set(
            LiveOperation(operation.query, operation.operation_name, operation.variables, frames)
        )
        await super().run_operation(operation)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (the legacy subscriptions-transport-ws protocol)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued = _queue_frames(self)

    async def handle(self) -> None:
        OPEN_WEBSOCKETS.inc()
        deadline = asyncio.create_task(self._close_without_init())
        try:
            await super().handle()
        finally:
            OPEN_WEBSOCKETS.dec()
            deadline.cancel()
            with suppress(asyncio.CancelledError):
                await deadline
            self.context.release_socket()
            await self._queued.shutdown()
            await _end_presence(self.context)

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
        LIVE_OPERATION.set(LiveOperation(query, operation_name, variables, frames))
        await super().handle_async_results(operation_id, query, operation_name, variables)

    async def _close_without_init(self) -> None:
        timeout = self.context.services.settings.connection_init_timeout_seconds
        await asyncio.sleep(timeout)
        if not self.connection_acknowledged:
            await self.websocket.close(INIT_TIMEOUT_CODE, "Connection initialisation timeout")
