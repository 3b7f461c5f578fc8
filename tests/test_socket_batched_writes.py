"""Frames that wait for a paused transport are written together once it drains
(transport.socket_writer), on a real uvicorn server and a real websockets client.

A client that stops reading pauses its transport; the shared frames offered
meanwhile queue with their bytes and, once the client reads again, go out in a
few writes of many frames each: every frame once, in the order offered, with a
frame sent the usual way between them still in its place.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter
from websockets.asyncio.client import connect

from devtools.processes import free_port
from transport.socket_wire import KeepSocketWire, SocketWire, encoded_text_frame
from transport.socket_writer import QueuedWebSocket

FRAMES = 600
FRAME_TEXT_BYTES = 16 * 1024  # 600 of them: far past what loopback buffers hold


def frame_text(n: int) -> str:
    return json.dumps({"n": n, "pad": "x" * FRAME_TEXT_BYTES})


@asynccontextmanager
async def serving(offered: asyncio.Event) -> AsyncIterator[str]:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        adapter = ASGIWebSocketAdapter(cast(Any, None), websocket, websocket)
        queued = QueuedWebSocket(adapter, max_frames=10 * FRAMES)
        await websocket.receive_text()  # the client stopped reading: it says so
        for n in range(FRAMES // 2):
            text = frame_text(n)
            assert queued.offer_encoded(text, encoded_text_frame(text))
        assert queued.offer(json.dumps({"n": "between"}))
        for n in range(FRAMES // 2, FRAMES):
            text = frame_text(n)
            assert queued.offer_encoded(text, encoded_text_frame(text))
        offered.set()
        await queued.close(1000, "done")

    app = KeepSocketWire(Starlette(routes=[WebSocketRoute("/ws", endpoint)]))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no readiness event
            await asyncio.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await task


async def test_frames_queued_behind_a_paused_transport_go_out_together_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[int] = []
    write = SocketWire.write

    def counted(wire: SocketWire, frame: bytes) -> bool:
        done = write(wire, frame)
        if done:
            writes.append(len(frame))
        return done

    monkeypatch.setattr(SocketWire, "write", counted)
    offered = asyncio.Event()
    async with serving(offered) as url, connect(url, compression=None, max_size=None) as client:
        await client.send("reading no more")
        async with asyncio.timeout(30):
            await offered.wait()  # every frame was offered before the client reads again
            received = [json.loads(await client.recv())["n"] for _ in range(FRAMES + 1)]
    half = FRAMES // 2
    assert received == [*range(half), "between", *range(half, FRAMES)]
    # Each frame's bytes were written once: straight until the transport paused
    # (loopback's buffers take a few megabytes), then those that waited, many
    # frames to a write.
    assert sum(writes) == sum(len(encoded_text_frame(frame_text(n))) for n in range(FRAMES))
    straight = sum(size < 2 * FRAME_TEXT_BYTES for size in writes)
    together = [size for size in writes if size >= 2 * FRAME_TEXT_BYTES]
    assert together, "no frames waited for the transport"
    assert len(together) * 10 <= FRAMES - straight
