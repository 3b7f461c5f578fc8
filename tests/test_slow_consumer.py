"""A socket whose client stops reading is closed with 1013 once its bounded send
queue is full; producers never wait on it.

Through a real server, a client that stops reading gets the 1013 close frame when it
reads again (``tests.support.slow_consumer``). Unit tests
of ``QueuedWebSocket`` cover the queue's own rules with a socket that never
completes a send.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest_asyncio
from strawberry.http.async_base_view import AsyncWebSocketAdapter

from tests.support.server import ServerProcess
from tests.support.slow_consumer import (
    StuckSocket,
    assert_a_stuck_client_gets_1013_and_a_reader_keeps_up,
)
from transport.socket_writer import SLOW_CONSUMER_CODE, QueuedWebSocket

# A burst of frames per message (one per subscription) stays below the queue's size,
# so a client that reads keeps up.
QUEUE_FRAMES = 16


@pytest_asyncio.fixture(loop_scope="session")
async def small_queue_server() -> AsyncIterator[ServerProcess]:
    server = ServerProcess("slow-consumer", {"PLOP_SOCKET_SEND_QUEUE_FRAMES": str(QUEUE_FRAMES)})
    await server.start()
    yield server
    await server.stop()


async def test_client_that_stops_reading_gets_1013_and_a_reading_one_keeps_up(
    small_queue_server: ServerProcess,
) -> None:
    await assert_a_stuck_client_gets_1013_and_a_reader_keeps_up(small_queue_server)


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
