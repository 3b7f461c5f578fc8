"""What an idle subscribed socket keeps alive in the server: two tasks, nothing more.

A server with ``PLOP_TRACEMALLOC_DIR`` dumps its live objects and tasks on SIGUSR1
(``observability.alloc_profile``). Between a dump with a few subscribed sockets
open and one with more, each further socket adds its connection's task (uvicorn's
ASGI call) and its operation's task (which follows the room's feed), on both
subprotocols: no writer task waiting for frames, no task sleeping until the
connection_init deadline, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import websockets

from client import PlopClient
from tests.support.clients import SUBPROTOCOLS, unique_name
from tests.support.raw_socket import RawSocket
from tests.support.server import ServerProcess

PASSWORD = "idle socket password 1"
QUERY = "subscription($r: ID!) { messageAdded(roomId: $r, afterSeq: 0) { seq } }"
FIRST_SOCKETS = 2
MORE_SOCKETS = 4
TASKS_PER_SOCKET = 2
# Where a socket's tasks wait: its connection's (uvicorn's ASGI call), its handler's
# (operations, deadlines) and its writer's.
SOCKET_MARKS = ("run_asgi", "handlers.py", "socket_writer.py")
# A dump walks every object of the server (gc.get_objects): seconds on a loaded machine.
DUMP_TIMEOUT_SECONDS = 300.0


async def _dump(server: ServerProcess, directory: Path, number: int) -> dict[str, Counter[str]]:
    os.kill(server.pid, signal.SIGUSR1)
    done = directory / f"{number}.json"
    async with asyncio.timeout(DUMP_TIMEOUT_SECONDS):
        # Another process's file: there is no event to await across processes.
        while not done.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    counts = json.loads(done.read_text())
    return {kind: Counter(counts[kind]) for kind in ("objects", "tasks")}


async def _subscribed(
    sockets: AsyncExitStack, server: ServerProcess, subprotocol: str, token: str, room_id: str
) -> None:
    """A socket subscribed from the room's start: the stored first message arriving
    means the subscription follows the room's feed. The client sends no keep-alive
    pings: a dump holds the server's loop longer than a ping waits for its pong."""
    connection = await sockets.enter_async_context(
        websockets.connect(server.ws_url, subprotocols=[subprotocol], ping_interval=None)  # type: ignore[list-item]
    )
    await connection.send(json.dumps({"type": "connection_init", "payload": {"authToken": token}}))
    socket = RawSocket(connection, subprotocol)
    assert (await socket.frame())["type"] == "connection_ack"
    await socket.subscribe("1", QUERY, {"r": room_id})
    frame = await socket.frame()
    assert frame["payload"]["data"]["messageAdded"]["seq"] == 1, frame


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_an_idle_subscribed_socket_holds_its_connection_and_operation_tasks_only(
    subprotocol: str, tmp_path: Path
) -> None:
    server = ServerProcess(f"idle-socket-{unique_name()}", {"PLOP_TRACEMALLOC_DIR": str(tmp_path)})
    await server.start()
    try:
        async with PlopClient(server.http_url) as alice, PlopClient(server.http_url) as bob:
            token = (await alice.sign_up(unique_name("alice"), PASSWORD)).token
            bob_id = (await bob.sign_up(unique_name("bob"), PASSWORD)).user.id
            room = await alice.create_direct_room(bob_id)
            await alice.send_message(room.id, "the room's first message")
        async with AsyncExitStack() as sockets:
            for _ in range(FIRST_SOCKETS):
                await _subscribed(sockets, server, subprotocol, token, room.id)
            before = await _dump(server, tmp_path, 1)
            for _ in range(MORE_SOCKETS):
                await _subscribed(sockets, server, subprotocol, token, room.id)
            after = await _dump(server, tmp_path, 2)
    finally:
        await server.stop()
    waiting = after["tasks"].copy()
    waiting.subtract(before["tasks"])
    # The app's own loops (presence, sessions) may be between two steps at a dump.
    of_sockets = {
        place: count
        for place, count in waiting.items()
        if count and any(mark in place for mark in SOCKET_MARKS)
    }
    assert sum(of_sockets.values()) == TASKS_PER_SOCKET * MORE_SOCKETS, of_sockets
