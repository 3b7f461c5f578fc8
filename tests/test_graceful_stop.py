"""A graceful stop (SIGTERM): readiness off, new sockets refused, open sockets closed
with 1012 after their queued frames, and the process gone within its budget.

Two instances on the real services: one of the test's own (A), which it stops, and
``server_b``, where A's client resumes with afterSeq.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any, cast

import httpx
import pytest
import websockets
from strawberry.http.async_base_view import AsyncWebSocketAdapter

from app.shutdown import WATCHDOG_EXIT_STATUS
from observability.stacks import still_running
from tests.conftest import RUN_ID
from tests.support.chat import MESSAGE_ADDED, direct_room, send
from tests.support.clients import SUBPROTOCOLS, sign_up
from tests.support.raw_socket import RawSocket, raw_socket
from tests.support.server import ServerProcess
from transport.draining import SERVICE_RESTART_CODE, OpenSockets
from transport.socket_writer import QueuedWebSocket

SHUTDOWN_SECONDS = 8.0
# Long enough for the test to see the drain from outside before the sockets move.
NOTICE_SECONDS = 3.0
MESSAGES = 30
# The sender's pace: a steady stream across the stop, not a burst before it.
SEND_INTERVAL_SECONDS = 0.1
RECEIVED_BEFORE_STOP = 5


def seq_of(payload: dict[str, Any]) -> int:
    seq: int = payload["data"]["messageAdded"]["seq"]
    return seq


async def next_seq(socket: RawSocket) -> int:
    frame = await socket.frame()
    assert frame["type"] in ("next", "data"), frame
    return seq_of(frame["payload"])


class ReadinessWatch:
    """Asks /readyz of a server over and over until it no longer answers."""

    def __init__(self, server: ServerProcess) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.draining = asyncio.Event()
        self._task = asyncio.create_task(self._watch(server.base_url))

    async def _watch(self, base_url: str) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                try:
                    response = await client.get(f"{base_url}/readyz")
                except httpx.TransportError:
                    return  # the listener is closed: the process is going away
                self.answers.append((response.status_code, response.json()))
                if response.status_code == 503 and response.json() == {"status": "draining"}:
                    self.draining.set()
                # Another process's state: there is no event to await.
                await asyncio.sleep(0.05)

    async def done(self, within: float) -> None:
        async with asyncio.timeout(within):
            await self._task


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_sigterm_closes_sockets_with_1012_and_clients_resume_elsewhere(
    real_env: dict[str, str], server_b: ServerProcess, subprotocol: str
) -> None:
    stopping = ServerProcess(
        f"{RUN_ID}-stopping-{subprotocol}",
        {
            **real_env,
            "PLOP_INSTANCE_ID": f"stopping-{subprotocol}",
            "PLOP_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
            "PLOP_SHUTDOWN_NOTICE_SECONDS": str(NOTICE_SECONDS),
        },
    )
    await stopping.start()
    try:
        alice, bob = await sign_up(server_b), await sign_up(server_b)
        room_id = await direct_room(server_b, alice, bob)

        async def paced_sends() -> None:
            for n in range(1, MESSAGES + 1):
                await send(server_b, alice, room_id, f"paced {n}", f"paced-{n}")
                await asyncio.sleep(SEND_INTERVAL_SECONDS)

        received: list[int] = []
        async with raw_socket(stopping, subprotocol, bob.token) as socket:
            await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": 0})
            sender = asyncio.create_task(paced_sends())
            received += [await next_seq(socket) for _ in range(RECEIVED_BEFORE_STOP)]

            stopping.terminate()
            stopped_at = time.monotonic()
            readiness = ReadinessWatch(stopping)
            async with asyncio.timeout(NOTICE_SECONDS):
                await readiness.draining.wait()
            # While it drains, a new socket is refused; the open one still streams.
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(stopping.ws_url, subprotocols=[subprotocol]):  # type: ignore[list-item]
                    pass
            assert refused.value.response.status_code == 503

            ending = await socket.ending(within=SHUTDOWN_SECONDS)
        assert ending.code == 1012, ending
        received += [seq_of(payload) for payload in ending.payloads()]

        status = await stopping.exited(within=SHUTDOWN_SECONDS + 2)
        took = time.monotonic() - stopped_at
        await readiness.done(within=2)

        async with raw_socket(server_b, subprotocol, bob.token) as socket:
            await socket.subscribe("2", MESSAGE_ADDED, {"r": room_id, "after": received[-1]})
            while len(received) < MESSAGES:
                received.append(await next_seq(socket))
        await sender
    finally:
        await stopping.stop()

    assert received == list(range(1, MESSAGES + 1))
    assert status in (0, -signal.SIGTERM), f"exit status {status}"
    assert status != WATCHDOG_EXIT_STATUS
    assert took < SHUTDOWN_SECONDS
    # Ready until the signal, draining after it, never ready again.
    statuses = [body["status"] for _, body in readiness.answers]
    assert "draining" in statuses
    assert "ready" not in statuses[statuses.index("draining") :]
    assert all(code == 503 for code, body in readiness.answers if body["status"] == "draining")


class RecordingSocket:
    """A socket adapter that records what is written to it, in order."""

    def __init__(self) -> None:
        self.written: list[object] = []

    async def send_json(self, message: object) -> None:
        self.written.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.written.append(("close", code))


async def test_a_stop_lets_a_mutation_in_flight_answer_before_the_close() -> None:
    adapter = RecordingSocket()
    socket = QueuedWebSocket(cast(AsyncWebSocketAdapter, adapter), max_frames=10)
    sockets = OpenSockets()
    sockets.add(socket)
    stored = asyncio.Event()

    async def mutation() -> None:
        await stored.wait()  # the store answers only once the stop has begun
        await socket.send_json({"id": "1", "type": "next", "payload": {"data": {}}})
        await socket.send_json({"id": "1", "type": "complete"})

    running = asyncio.create_task(mutation())
    socket.answering(running)
    closing = asyncio.create_task(sockets.close_all(within_seconds=5))
    # The close waits for the mutation: give it every chance to go ahead first.
    for _ in range(10):
        await asyncio.sleep(0)
    assert adapter.written == []
    stored.set()
    assert await closing == 1
    assert adapter.written == [
        {"id": "1", "type": "next", "payload": {"data": {}}},
        {"id": "1", "type": "complete"},
        ("close", SERVICE_RESTART_CODE),
    ]


async def test_a_request_that_never_completes_does_not_hold_the_stop_past_its_budget() -> None:
    # uvicorn alone would wait for this request for ever (no graceful timeout by default).
    budget = 6.0
    server = ServerProcess(
        f"{RUN_ID}-stuck-request",
        {"PLOP_SHUTDOWN_SECONDS": str(budget), "PLOP_SHUTDOWN_NOTICE_SECONDS": "0"},
    )
    await server.start()
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: plop\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        await writer.drain()
        # Answered after the server read the stuck request's head (one loop, in order).
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"{server.base_url}/healthz")).status_code == 200
        server.terminate()
        stopped_at = time.monotonic()
        status = await server.exited(within=budget + 2)
        took = time.monotonic() - stopped_at
        writer.close()
    finally:
        await server.stop()
    assert status in (0, -signal.SIGTERM), f"exit status {status}"
    assert took < budget


async def test_a_second_sigterm_stops_without_waiting_out_the_drain() -> None:
    notice = 5.0
    server = ServerProcess(
        f"{RUN_ID}-second-signal",
        {"PLOP_SHUTDOWN_SECONDS": "10", "PLOP_SHUTDOWN_NOTICE_SECONDS": str(notice)},
    )
    await server.start()
    try:
        server.terminate()
        readiness = ReadinessWatch(server)
        async with asyncio.timeout(notice):
            await readiness.draining.wait()
        server.terminate()
        again_at = time.monotonic()
        status = await server.exited(within=notice)
        took = time.monotonic() - again_at
    finally:
        await server.stop()
    assert status in (0, -signal.SIGTERM), f"exit status {status}"
    # The rest of the notice is skipped: what is left is uvicorn's stop and the lifespan's.
    assert took < notice / 2


async def test_a_stop_cut_short_logs_where_each_task_waits() -> None:
    """The watchdog's last line names each task's await chain, innermost first."""

    async def waits_inside() -> None:
        await asyncio.Event().wait()

    async def waits_outside() -> None:
        await waits_inside()

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(waits_outside(), name="held-up")
    await asyncio.sleep(0)  # the task starts and waits
    try:
        dump = await asyncio.to_thread(still_running, loop)
    finally:
        task.cancel()
    line = next(line for line in dump.splitlines() if line.startswith("task held-up:"))
    assert "waits_inside <- " in line
    assert line.index("waits_inside") < line.index("waits_outside")
    assert dump.startswith("loop thread: ")
