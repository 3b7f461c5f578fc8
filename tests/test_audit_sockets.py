"""The socket's holes an attacker found (issue 20, items 1, 6 and 7), closed.

1. A second ``connection_init`` is refused on both subprotocols (4429; graphql-ws
   sends ``connection_error`` first): it can neither swap the socket's user for the
   owner of a stolen token nor take another socket slot or presence connection.
6. A socket's send queue is bounded in bytes as well as in frames (1013 past it).
7. A socket counts against its client address from the moment it opens, before its
   connection_init, and IPv6 clients count per /64, for sockets and HTTP limits alike.

One server of their own, on the embedded backends, with small caps and a small
queue, trusting loopback as a proxy: each test names its client addresses in
X-Forwarded-For (fresh ones, so that no count carries over between tests).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
import websockets
from starlette.requests import HTTPConnection
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from websockets.asyncio.client import ClientConnection

from devtools.processes import LOAD_TEST_LIMITS
from errors import RateLimited
from services.socket_caps import SocketCaps
from settings import Settings
from tests.conftest import PRESENCE_TIMING
from tests.support.chat import (
    MESSAGE_ADDED,
    USER_PRESENCE,
    as_user,
    befriend,
    direct_room,
    send,
)
from tests.support.clients import (
    LEGACY_WS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Account,
    metric,
    sign_up,
)
from tests.support.raw_socket import RawSocket
from tests.support.server import ServerProcess
from tests.support.slow_consumer import (
    MAX_MESSAGES,
    SUBSCRIPTIONS_PER_SOCKET,
    StuckSocket,
    assert_a_stuck_client_gets_1013_and_a_reader_keeps_up,
)
from transport.client_address import client_address
from transport.socket_writer import SLOW_CONSUMER_CODE, QueuedWebSocket

PER_USER = 3
PER_ADDRESS = 4
FAILED_LOG_INS_PER_ADDRESS = 2
QUEUE_BYTES = 64 * 1024
PASSWORD = "correct horse battery"
ME = "{ me { id } }"
MESSAGE_ADDED_TEXT = (
    "subscription($r: ID!, $after: Int) { messageAdded(roomId: $r, afterSeq: $after) { text } }"
)
LOG_OUT = "mutation { logOut }"
LOG_IN = "mutation($u: String!, $p: String!) { logIn(username: $u, password: $p) { token } }"
CLOSE_WITHIN_SECONDS = 10.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def audit() -> AsyncIterator[ServerProcess]:
    settings = {
        "PLOP_MAX_SOCKETS_PER_USER": str(PER_USER),
        "PLOP_MAX_SOCKETS_PER_ADDRESS": str(PER_ADDRESS),
        "PLOP_FAILED_LOG_IN_PER_ADDRESS_LIMIT": str(FAILED_LOG_INS_PER_ADDRESS),
        "PLOP_SOCKET_SEND_QUEUE_BYTES": str(QUEUE_BYTES),
        "PLOP_FORWARDED_ALLOW_IPS": "127.0.0.1",
    }
    server = ServerProcess("audit-sockets", {**LOAD_TEST_LIMITS, **PRESENCE_TIMING, **settings})
    await server.start()
    yield server
    await server.stop()


def fresh_ipv4() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def fresh_ipv6_64() -> str:
    """A fresh IPv6 /64's prefix, e.g. ``2001:db8:1a2b:3c4d``."""
    return f"2001:db8:{random.randrange(1 << 16):x}:{random.randrange(1 << 16):x}"


async def opened(server: ServerProcess, subprotocol: str, address: str) -> ClientConnection:
    """A socket from the address (X-Forwarded-For) that has sent nothing yet."""
    return await websockets.connect(
        server.ws_url,
        subprotocols=[subprotocol],  # type: ignore[list-item]
        additional_headers={"X-Forwarded-For": address},
    )


async def init(
    connection: ClientConnection, token: str, within: float = CLOSE_WITHIN_SECONDS
) -> dict[str, Any] | None:
    """Sends connection_init: the server's first frame, None if it closed the socket
    without one (it may have closed it before the connection_init arrived)."""
    with suppress(websockets.ConnectionClosed):
        await connection.send(
            json.dumps({"type": "connection_init", "payload": {"authToken": token}})
        )
    try:
        async with asyncio.timeout(within):
            answer: dict[str, Any] = json.loads(await connection.recv())
    except websockets.ConnectionClosed:
        return None
    return answer


async def all_closed(server: ServerProcess, open_before: float) -> None:
    """Waits until the server counts no more open sockets than before."""
    async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
        # Another process's count: polled, there is no event to await across processes.
        while await metric(server, "plop_websockets_open") > open_before:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def assert_refused(
    connection: ClientConnection,
    subprotocol: str,
    first: dict[str, Any] | None,
    code: int,
    error_code: str,
) -> None:
    """The socket was closed with the code, after a coded connection_error on graphql-ws."""
    if subprotocol == LEGACY_WS:
        assert first is not None and first["type"] == "connection_error", first
        assert first["payload"]["extensions"]["code"] == error_code, first
    else:
        assert first is None, first
    async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
        await connection.wait_closed()
    assert connection.close_code == code, (connection.close_code, connection.close_reason)


# --- 1. a second connection_init --------------------------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_second_connection_init_with_a_stolen_token_is_refused(
    audit: ServerProcess, subprotocol: str
) -> None:
    alice, bob, carol = [await sign_up(audit) for _ in range(3)]
    bobs_room, alices_room = (
        await direct_room(audit, bob, carol),
        await direct_room(audit, alice, carol),
    )
    async with await opened(audit, subprotocol, fresh_ipv4()) as others:
        # Alice's other socket, to show that bob's logOut ends nothing of hers.
        assert (await init(others, alice.token) or {}).get("type") == "connection_ack"
        async with await opened(audit, subprotocol, fresh_ipv4()) as socket:
            ack = await init(socket, alice.token)
            assert ack is not None and ack["payload"] == {"userId": alice.id}
            # Init again with bob's token, then at once follow his room and ask who is here.
            await init_then_operate(socket, subprotocol, bob.token, bobs_room)
            refused = await RawSocket(socket, subprotocol).ending(CLOSE_WITHIN_SECONDS)
        assert refused.code == 4429, refused
        if subprotocol == LEGACY_WS:
            assert [frame["type"] for frame in refused.frames] == ["connection_error"]
            assert refused.frames[0]["payload"]["extensions"]["code"] == "BAD_USER_INPUT"
        else:
            assert refused.frames == []
        # Bob logs out; carol writes to each: alice's other socket is still open, hers.
        assert (await as_user(audit, bob, LOG_OUT))["logOut"] is True
        await send(audit, carol, bobs_room, "for bob only")
        await send(audit, carol, alices_room, "for alice")
        variables = {"r": alices_room, "after": 0}
        result = await first_result(others, subprotocol, MESSAGE_ADDED_TEXT, variables)
        assert result == {"messageAdded": {"text": "for alice"}}


async def init_then_operate(
    connection: ClientConnection, subprotocol: str, token: str, room_id: str
) -> None:
    """Sends a connection_init, then a room subscription and a ``me`` query, at once."""
    kind = "subscribe" if subprotocol == TRANSPORT_WS else "start"
    frames = [
        {"type": "connection_init", "payload": {"authToken": token}},
        {
            "id": "room",
            "type": kind,
            "payload": {"query": MESSAGE_ADDED, "variables": {"r": room_id}},
        },
        {"id": "me", "type": kind, "payload": {"query": ME}},
    ]
    for frame in frames:
        try:
            await connection.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            return  # refused already: the rest goes unsent


async def first_result(
    connection: ClientConnection, subprotocol: str, query: str, variables: dict[str, Any]
) -> Any:
    """The first result of a subscription on an acknowledged socket: its data."""
    socket = RawSocket(connection, subprotocol)
    await socket.subscribe("first", query, variables)
    while True:
        frame = await socket.frame()
        assert frame["type"] in ("next", "data"), frame
        if frame["id"] == "first":
            assert "errors" not in frame["payload"], frame
            return frame["payload"]["data"]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_refused_connection_inits_leak_no_socket_slot_and_no_presence(
    audit: ServerProcess, subprotocol: str
) -> None:
    alice, friend = await sign_up(audit), await sign_up(audit)
    await befriend(audit, alice, friend)
    open_before = await metric(audit, "plop_websockets_open")
    # Twice the per-user cap of sockets, each with a second connection_init.
    for _ in range(2 * PER_USER):
        async with await opened(audit, subprotocol, fresh_ipv4()) as socket:
            assert (await init(socket, alice.token) or {}).get("type") == "connection_ack"
            await init_then_operate(socket, subprotocol, alice.token, "none")
            await RawSocket(socket, subprotocol).ending(within=2)
    await all_closed(audit, open_before)
    # Alice may still open her whole cap's worth of sockets.
    sockets = [await opened(audit, subprotocol, fresh_ipv4()) for _ in range(PER_USER)]
    answers = [await init(socket, alice.token) for socket in sockets]
    assert [(answer or {}).get("type") for answer in answers] == ["connection_ack"] * PER_USER
    for socket in sockets:
        await socket.close()
    await all_closed(audit, open_before)
    # With every socket closed she goes OFFLINE: no presence connection was left over.
    async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
        # Presence lives in another process: polled, with nothing to await.
        while await presence(audit, friend, alice) != "OFFLINE":  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def presence(server: ServerProcess, viewer: Account, user: Account) -> str:
    status: str = (await as_user(server, viewer, USER_PRESENCE, u=user.id))["user"]["presence"][
        "status"
    ]
    return status


# --- 6. the send queue, in bytes ---------------------------------------------------


async def test_a_stuck_client_is_closed_once_its_queue_passes_its_bytes(
    audit: ServerProcess,
) -> None:
    # The frame bound alone would never close it: it allows more frames than are sent.
    frames_bound = Settings.model_fields["socket_send_queue_frames"].default
    assert frames_bound > MAX_MESSAGES * SUBSCRIPTIONS_PER_SOCKET
    await assert_a_stuck_client_gets_1013_and_a_reader_keeps_up(audit)


async def test_the_queue_closes_past_its_bytes_before_its_frames() -> None:
    stuck = StuckSocket()
    writer = QueuedWebSocket(cast(AsyncWebSocketAdapter, stuck), max_frames=1_000, max_bytes=1_000)
    big = {"payload": "x" * 300}
    async with asyncio.timeout(5):  # no send waits on the stuck peer
        for _ in range(3):  # 3 * 313 bytes: within the bound
            await writer.send_json(big)
        within_bound = stuck.closed
        await writer.send_json(big)  # past it
    assert within_bound is None
    assert stuck.closed is not None and stuck.closed[0] == SLOW_CONSUMER_CODE
    await writer.shutdown()


async def test_a_frame_larger_than_the_bound_still_goes_to_an_idle_socket() -> None:
    peer = StuckSocket(stuck=False)
    writer = QueuedWebSocket(cast(AsyncWebSocketAdapter, peer), max_frames=10, max_bytes=100)
    for n in range(3):
        await writer.send_json({"n": n, "payload": "x" * 500})
        await asyncio.sleep(0)  # the writer writes it, as the event loop would
    await writer.close(1000, "done")
    assert [frame["n"] for frame in peer.sent] == [0, 1, 2]
    assert peer.closed == (1000, "done")


# --- 7. sockets before connection_init, and IPv6 -----------------------------------


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_sockets_waiting_for_connection_init_count_against_their_address(
    audit: ServerProcess, subprotocol: str
) -> None:
    await assert_address_cap_counts_waiting_sockets(
        audit, subprotocol, [fresh_ipv4()] * (PER_ADDRESS + 1), fresh_ipv4()
    )


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_ipv6_sockets_count_against_their_64(audit: ServerProcess, subprotocol: str) -> None:
    network = fresh_ipv6_64()
    same_64 = [
        f"{network}:{random.randrange(1 << 16):x}::{n + 1:x}" for n in range(PER_ADDRESS + 1)
    ]
    await assert_address_cap_counts_waiting_sockets(
        audit, subprotocol, same_64, f"{fresh_ipv6_64()}::1"
    )


async def assert_address_cap_counts_waiting_sockets(
    server: ServerProcess, subprotocol: str, addresses: list[str], elsewhere: str
) -> None:
    """The cap's worth of sockets that sent nothing, from ``addresses``, leave no room
    for the next (from the last of them), until they close; ``elsewhere`` is not held."""
    user = await sign_up(server)
    open_before = await metric(server, "plop_websockets_open")
    waiting = [await opened(server, subprotocol, address) for address in addresses[:-1]]
    refused = await opened(server, subprotocol, addresses[-1])
    first = await init(refused, user.token)
    await assert_refused(refused, subprotocol, first, 4403, RateLimited.code)
    assert "from this address" in (refused.close_reason or "")
    async with await opened(server, subprotocol, elsewhere) as other:
        assert (await init(other, user.token) or {}).get("type") == "connection_ack"
    for socket in waiting:
        await socket.close()
    await all_closed(server, open_before)
    async with await opened(server, subprotocol, addresses[-1]) as again:
        assert (await init(again, user.token) or {}).get("type") == "connection_ack"


async def test_failed_log_ins_from_one_ipv6_64_share_one_budget(audit: ServerProcess) -> None:
    alice = await sign_up(audit)
    network = fresh_ipv6_64()
    async with httpx.AsyncClient(timeout=30) as client:

        async def log_in(address: str, password: str) -> dict[str, Any]:
            variables = {"u": alice.username, "p": password}
            response = await client.post(
                audit.http_url,
                json={"query": LOG_IN, "variables": variables},
                headers={"X-Forwarded-For": address},
            )
            body: dict[str, Any] = response.json()
            return body

        for n in range(FAILED_LOG_INS_PER_ADDRESS):
            failed = await log_in(f"{network}::{n + 1:x}", "wrong guess 123")
            assert failed["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", failed
        # Another address of the same /64, with the right password: refused.
        refused = await log_in(f"{network}:1:2:3:4", PASSWORD)
        assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED", refused
        assert refused["errors"][0]["extensions"]["retryAfter"] > 0
        # Another /64 is another client.
        other = await log_in(f"{fresh_ipv6_64()}::1", PASSWORD)
        assert "errors" not in other and other["data"]["logIn"]["token"], other


def _connection(peer: str, forwarded: list[str]) -> HTTPConnection:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return HTTPConnection({"type": "http", "client": (peer, 4000), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "prefix", "expected"),
    [
        ("2001:db8:1:2:3:4:5:6", [], 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", [], 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", [], 128, "2001:db8:1:2:3:4:5:6/128"),
        # IPv4, and IPv4 through a dual-stack socket, are counted per address.
        ("192.0.2.7", [], 64, "192.0.2.7"),
        ("::ffff:192.0.2.7", [], 64, "192.0.2.7"),
        # The client a trusted proxy names is grouped too.
        ("10.0.0.2", ["2001:db8:a:b:c::1"], 64, "2001:db8:a:b::/64"),
        ("unknown", [], 64, "unknown"),
    ],
)
def test_an_ipv6_client_counts_as_its_network(
    peer: str, forwarded: list[str], prefix: int, expected: str
) -> None:
    assert client_address(_connection(peer, forwarded), "10.0.0.0/8", prefix) == expected


def test_a_socket_counts_against_its_address_when_it_opens_and_its_user_once_admitted() -> None:
    caps = SocketCaps(per_user=1, per_address=2)
    first = caps.open("a")
    second = caps.open("a")
    with pytest.raises(RateLimited, match="from this address"):
        caps.open("a")
    first.admit("u")
    with pytest.raises(RateLimited, match="for this user"):
        second.admit("u")
    first.release()
    first.release()  # idempotent
    second.admit("u")
    caps.open("a").release()
    second.release()
    assert [caps.open("a"), caps.open("a")]
