"""The transport's part of a graceful stop (``app.shutdown``): which sockets are open,
closing them all with 1012 after their queued frames, and refusing new ones."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from transport.socket_writer import QueuedWebSocket

logger = logging.getLogger(__name__)

# RFC 6455 "Service Restart": the client should reconnect (elsewhere) and resume.
SERVICE_RESTART_CODE = 1012
SERVICE_RESTART_REASON = "Server restarting: resume with afterSeq"
# What a refused handshake tells the client to wait before it tries this address again.
RETRY_AFTER_SECONDS = 1


class OpenSockets:
    """Every WebSocket this process serves, from its handshake to its end."""

    def __init__(self) -> None:
        self._sockets: set[QueuedWebSocket] = set()

    def add(self, socket: QueuedWebSocket) -> None:
        self._sockets.add(socket)

    def discard(self, socket: QueuedWebSocket) -> None:
        self._sockets.discard(socket)

    def __len__(self) -> int:
        return len(self._sockets)

    async def close_all(self, within_seconds: float) -> int:
        """Closes every socket with 1012 once its queries and mutations in flight have
        answered and its queued frames are written, all at once, waiting at most
        ``within_seconds``; returns how many were closed."""
        sockets = list(self._sockets)
        if not sockets:
            return 0
        closing = [
            asyncio.create_task(socket.finish(SERVICE_RESTART_CODE, SERVICE_RESTART_REASON))
            for socket in sockets
        ]
        done, late = await asyncio.wait(closing, timeout=within_seconds)
        for task in late:
            task.cancel()
        if late:
            logger.warning("sockets not closed in time", extra={"sockets": len(late)})
        return len(done)


class RefuseWhileDraining:
    """Refuses WebSocket handshakes once the app drains (HTTP 503 with Retry-After)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or not getattr(scope["app"].state, "draining", False):
            await self.app(scope, receive, send)
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            ]
            await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": b"draining\n"})
        else:  # a server without the extension answers 403
            await send({"type": "websocket.close", "code": SERVICE_RESTART_CODE})
