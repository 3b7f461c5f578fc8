"""A socket whose client stops reading is closed with 1013 once its bounded send
queue is full; producers never wait on it (unit tests of ``QueuedWebSocket``).

Through a real server this needs megabytes of unread frames first (the kernel's
socket buffers on loopback grow to several MiB before backpressure reaches the app),
so the mechanism is tested here directly with a socket that never completes a send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import cast

from strawberry.http.async_base_view import AsyncWebSocketAdapter

from transport.socket_writer import SLOW_CONSUMER_CODE, QueuedWebSocket


class StuckSocket:
    """A socket adapter whose sends never complete, like a peer that stopped reading."""

    def __init__(self, stuck: bool = True) -> None:
        self.sent: list[Mapping[str, object]] = []
        self.closed: tuple[int, str] | None = None
        self._stuck = stuck
        self.released = asyncio.Event()

    async def send_json(self, message: Mapping[str, object]) -> None:
        if self._stuck:
            await self.released.wait()
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        raise NotImplementedError


def queued(socket: StuckSocket, frames: int) -> QueuedWebSocket:
    return QueuedWebSocket(cast(AsyncWebSocketAdapter, socket), max_frames=frames)


async def test_full_queue_closes_the_socket_with_1013_without_blocking_the_producer() -> None:
    socket = StuckSocket()
    writer = queued(socket, frames=5)
    async with asyncio.timeout(5):  # no send waits on the stuck peer
        for n in range(50):
            await writer.send_json({"n": n})
    assert socket.closed is not None and socket.closed[0] == SLOW_CONSUMER_CODE
    await writer.shutdown()


async def test_frames_are_written_in_order_while_the_peer_keeps_up() -> None:
    socket = StuckSocket(stuck=False)
    writer = queued(socket, frames=5)
    for n in range(200):
        await writer.send_json({"n": n})
        if n % 4 == 3:
            await asyncio.sleep(0)  # let the writer task run, as the event loop would
    await writer.close(1000, "done")
    assert [frame["n"] for frame in socket.sent] == list(range(200))
    assert socket.closed == (1000, "done")


async def test_close_flushes_frames_queued_before_it() -> None:
    socket = StuckSocket(stuck=False)
    writer = queued(socket, frames=100)
    await writer.send_json({"type": "connection_error"})
    await writer.close(4403, "Forbidden")
    assert socket.sent == [{"type": "connection_error"}]
    assert socket.closed == (4403, "Forbidden")


async def test_frames_after_close_are_dropped() -> None:
    socket = StuckSocket(stuck=False)
    writer = queued(socket, frames=100)
    await writer.close(1000, "")
    await writer.send_json({"late": True})
    assert socket.sent == []
