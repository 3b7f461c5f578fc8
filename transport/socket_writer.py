"""Every frame to a socket goes through one bounded queue, written by one task.

A client that stops reading makes its frames pile up here instead of in server
memory without bound or in the tasks that produce them: once ``max_frames`` are
waiting, the socket is closed with 1013 (try again later) and the client resumes
with afterSeq. Producers never wait on a socket, so a slow client slows no one else.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import suppress
from typing import Any

from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.async_base_view import AsyncWebSocketAdapter

logger = logging.getLogger(__name__)

SLOW_CONSUMER_CODE = 1013
# How long a close waits for the frames queued before it (e.g. connection_error).
CLOSE_FLUSH_SECONDS = 5.0


class QueuedWebSocket:
    """Wraps strawberry's socket adapter with a bounded send queue."""

    def __init__(self, adapter: AsyncWebSocketAdapter, max_frames: int) -> None:
        self._adapter = adapter
        self._max_frames = max_frames
        # A frame is a message to encode, or text encoded once for many sockets.
        self._frames: asyncio.Queue[Mapping[str, object] | str] = asyncio.Queue()
        self._closed = False
        self._aborting: asyncio.Task[None] | None = None
        self._writer = asyncio.create_task(self._write())

    def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        return self._adapter.iter_json(ignore_parsing_errors=ignore_parsing_errors)

    async def send_json(self, message: Mapping[str, object]) -> None:
        if not self.offer(message) and self._aborting is not None:
            await self._aborting

    def offer(self, frame: Mapping[str, object] | str) -> bool:
        """Queues a frame without waiting; False if the socket takes no more frames."""
        if self._closed:
            return False
        if self._frames.qsize() >= self._max_frames:
            logger.warning("closing a slow consumer", extra={"queued": self._frames.qsize()})
            self._closed = True
            self._aborting = asyncio.create_task(
                self._abort(SLOW_CONSUMER_CODE, "Slow consumer: resume with afterSeq")
            )
            return False
        self._frames.put_nowait(frame)
        return True

    async def close(self, code: int, reason: str) -> None:
        """Closes after the frames queued so far are written (bounded wait)."""
        if self._closed:
            return
        self._closed = True
        with suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                await self._frames.join()
        await self._stop_writer()
        with suppress(Exception):  # the peer may be gone already
            await self._adapter.close(code, reason)

    async def _abort(self, code: int, reason: str) -> None:
        self._closed = True
        await self._stop_writer()
        with suppress(Exception):
            await self._adapter.close(code, reason)

    async def _write(self) -> None:
        while True:
            frame = await self._frames.get()
            try:
                if isinstance(frame, str):
                    await self._send_text(frame)
                else:
                    await self._adapter.send_json(frame)
            except Exception:
                # The peer is gone; the receive loop notices and shuts the handler down.
                self._closed = True
            finally:
                self._frames.task_done()

    async def _send_text(self, text: str) -> None:
        if isinstance(self._adapter, ASGIWebSocketAdapter):
            await self._adapter.ws.send_text(text)
        else:
            await self._adapter.send_json(json.loads(text))

    async def _stop_writer(self) -> None:
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)

    async def shutdown(self) -> None:
        """Ends the writer when the connection's handler is done."""
        self._closed = True
        await self._stop_writer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)
