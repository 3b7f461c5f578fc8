"""Shared frames go out many to a write (transport.socket_writer), on a real uvicorn
server and a real websockets client.

- Frames offered within one turn of the event loop are held and written together at
  its end, at most ``HELD_MAX_FRAMES`` to a write.
- A client that stops reading pauses its transport; the shared frames offered
  meanwhile queue with their bytes and, once the client reads again, go out in a
  few writes of many frames each.

Either way every frame arrives once, in the order offered, with a frame sent the
usual way between them still in its place.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
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
from transport.socket_writer import HELD_MAX_FRAMES, QueuedWebSocket

FRAMES = 600
FRAME_TEXT_BYTES = 16 * 1024  # 600 of them: far past what loopback buffers hold


def frame_text(n: int) -> str:
    return json.dumps({"n": n, "pad": "x" * FRAME_TEXT_BYTES})


def offer_around_one_plain(queued: QueuedWebSocket, texts: list[str]) -> None:
    """Offers the shared frames, with one frame sent the usual way halfway."""
    half = len(texts) // 2
    for text in texts[:half]:
        assert queued.offer_encoded(text, encoded_text_frame(text))
    assert queued.offer(json.dumps({"n": "between"}))
    for text in texts[half:]:
        assert queued.offer_encoded(text, encoded_text_frame(text))


@asynccontextmanager
async def serving(
    offered: asyncio.Event, offer: Callable[[QueuedWebSocket], None]
) -> AsyncIterator[str]:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        adapter = ASGIWebSocketAdapter(cast(Any, None), websocket, websocket)
        queued = QueuedWebSocket(adapter, max_frames=10 * FRAMES)
        await websocket.receive_text()  # the client is ready (or stopped reading)
        offer(queued)  # all in one turn of the loop
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


def counted_writes(monkeypatch: pytest.MonkeyPatch, offered: asyncio.Event) -> list[list[int]]:
    """The sizes of the wire's writes: [before every frame was offered, after]."""
    writes: list[list[int]] = [[], []]
    write = SocketWire.write

    def counted(wire: SocketWire, frame: bytes) -> bool:
        done = write(wire, frame)
        if done:
            writes[offered.is_set()].append(len(frame))
        return done

    monkeypatch.setattr(SocketWire, "write", counted)
    return writes


async def test_frames_queued_behind_a_paused_transport_go_out_together_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offered = asyncio.Event()
    writes = counted_writes(monkeypatch, offered)
    texts = [frame_text(n) for n in range(FRAMES)]
    async with (
        serving(offered, lambda queued: offer_around_one_plain(queued, texts)) as url,
        connect(url, compression=None, max_size=None) as client,
    ):
        await client.send("reading no more")
        async with asyncio.timeout(30):
            await offered.wait()  # every frame was offered before the client reads again
            received = [json.loads(await client.recv())["n"] for _ in range(FRAMES + 1)]
    half = FRAMES // 2
    assert received == [*range(half), "between", *range(half, FRAMES)]
    # Each frame's bytes were written once: held ones until the transport paused
    # (loopback's buffers take a few megabytes), then those that waited, many
    # frames to a write.
    sizes = [len(encoded_text_frame(text)) for text in texts]
    assert sum(writes[0]) + sum(writes[1]) == sum(sizes)
    waited = sum(writes[1]) // max(sizes)
    assert waited, "no frames waited for the transport"
    assert len(writes[1]) * 10 <= waited


async def test_frames_offered_in_one_turn_go_out_in_one_write_each_few_dozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offered = asyncio.Event()
    writes = counted_writes(monkeypatch, offered)
    count = HELD_MAX_FRAMES + HELD_MAX_FRAMES // 2
    texts = [json.dumps({"n": n}) for n in range(count)]

    def offer(queued: QueuedWebSocket) -> None:
        for text in texts:
            assert queued.offer_encoded(text, encoded_text_frame(text))

    async with serving(offered, offer) as url, connect(url, compression=None) as client:
        await client.send("ready")
        async with asyncio.timeout(30):
            received = [json.loads(await client.recv())["n"] for _ in range(count)]
    assert received == list(range(count))
    # The first HELD_MAX_FRAMES in one write as the bound is reached, the rest
    # together (at the end of the turn, or queued by the close that follows in the
    # same turn): two writes, not one per frame.
    sizes = [len(encoded_text_frame(text)) for text in texts]
    assert writes[0] + writes[1] == [sum(sizes[:HELD_MAX_FRAMES]), sum(sizes[HELD_MAX_FRAMES:])]


async def test_a_plain_frame_after_held_ones_keeps_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offered = asyncio.Event()
    writes = counted_writes(monkeypatch, offered)
    texts = [json.dumps({"n": n}) for n in range(20)]
    async with (
        serving(offered, lambda queued: offer_around_one_plain(queued, texts)) as url,
        connect(url, compression=None) as client,
    ):
        await client.send("ready")
        async with asyncio.timeout(30):
            received = [json.loads(await client.recv())["n"] for _ in range(21)]
    assert received == [*range(10), "between", *range(10, 20)]
    # The ten held before the plain frame were queued ahead of it, and written
    # together; the ten after it waited behind it, and went together too.
    assert len(writes[0]) + len(writes[1]) == 2
