"""Frames encoded once and written straight to uvicorn's transport (transport.socket_wire).

A real uvicorn server on loopback, a real websockets client: the bytes the wire
writes are the frame the client reads, in order with the frames sent the usual way;
a connection that negotiated compression, or that is closing, is never written to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.frames import Frame
from websockets.streams import StreamReader

from devtools.processes import free_port
from transport.socket_wire import KeepSocketWire, encoded_text_frame, socket_wire


def parsed(encoded: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(encoded)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("the frame was not complete")


@pytest.mark.parametrize("text", ["", "a", "é" * 70, "x" * 200, "y" * 70_000])
def test_an_encoded_frame_is_one_final_text_frame_of_the_text(text: str) -> None:
    frame = parsed(encoded_text_frame(text))
    assert frame.fin and frame.opcode.name == "TEXT"
    assert bytes(frame.data).decode() == text


# What the endpoint saw: whether each write went straight to the transport.
Writes = list[bool]


@asynccontextmanager
async def serving(writes: Writes) -> AsyncIterator[str]:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        wire = socket_wire(websocket.scope)
        assert wire is not None, "uvicorn's websockets protocol gives every socket a wire"
        writes.append(wire.write(encoded_text_frame("first, straight")))
        await websocket.send_text("second, the usual way")
        writes.append(wire.write(encoded_text_frame("third, straight")))
        await websocket.receive_text()  # the client's goodbye
        await websocket.close()
        writes.append(wire.write(encoded_text_frame("after the close")))

    app = KeepSocketWire(Starlette(routes=[WebSocketRoute("/ws", endpoint)]))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=True
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no readiness event
            await asyncio.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await task


async def test_frames_written_straight_arrive_in_order_with_the_others() -> None:
    writes: Writes = []
    async with serving(writes) as url, connect(url, compression=None) as client:
        received = [await client.recv() for _ in range(3)]
        await client.send("bye")
        await client.wait_closed()
    assert received == ["first, straight", "second, the usual way", "third, straight"]
    assert writes == [True, True, False]  # nothing is written once the close was sent


async def test_a_compressed_connection_is_never_written_to_straight() -> None:
    writes: Writes = []
    async with serving(writes) as url, connect(url, compression="deflate") as client:
        received = await client.recv()
        await client.send("bye")
        await client.wait_closed()
    assert received == "second, the usual way"
    assert writes == [False, False, False]
