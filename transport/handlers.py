"""Strawberry's two WebSocket protocol handlers, with Plop's socket rules.

Both protocols: frames go through a ``QueuedWebSocket``; open sockets and active
operations are counted for /metrics. The legacy ``graphql-ws`` handler also gets
the ``connection_init`` deadline that strawberry gives only to graphql-transport-ws.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from observability.metrics import OPEN_WEBSOCKETS
from schema.context import Context
from transport.socket_writer import QueuedWebSocket

logger = logging.getLogger(__name__)

INIT_TIMEOUT_CODE = 4408


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
            await self._queued.shutdown()
            await _end_presence(self.context)


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
            await self._queued.shutdown()
            await _end_presence(self.context)

    async def _close_without_init(self) -> None:
        timeout = self.context.services.settings.connection_init_timeout_seconds
        await asyncio.sleep(timeout)
        if not self.connection_acknowledged:
            await self.websocket.close(INIT_TIMEOUT_CODE, "Connection initialisation timeout")
