"""A session's end closes its sockets: logOut on any instance, expiry, a missed revocation.

graphql-transport-ws closes with 4401; graphql-ws sends ``connection_error`` (code
UNAUTHENTICATED) and closes. Nothing is delivered on a socket after its session
ended, and other sessions of the same user are untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.support.chat import MESSAGE_ADDED, direct_room, send
from tests.support.clients import (
    LEGACY_WS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
)
from tests.support.raw_socket import Ending, RawSocket, raw_socket
from tests.support.server import ServerProcess

LOG_IN = "mutation($u: String!, $p: String!) { logIn(username: $u, password: $p) { token } }"
CLOSE_WITHIN_SECONDS = 2.0


def assert_session_ended(socket: RawSocket, ending: Ending) -> None:
    if socket.subprotocol == TRANSPORT_WS:
        assert ending.code == 4401, ending
    else:
        errors = [frame for frame in ending.frames if frame["type"] == "connection_error"]
        assert errors, ending
        assert errors[0]["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
        assert ending.code is not None, ending


def texts(ending: Ending) -> list[str]:
    return [payload["data"]["messageAdded"]["text"] for payload in ending.payloads()]


async def second_session(server: ServerProcess, account: Account) -> Account:
    async with http_session(server) as session:
        data = await call(session, LOG_IN, u=account.username, p="correct horse battery")
    return Account(data["logIn"]["token"], account.id, account.username, account.display_name)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_log_out_closes_the_sessions_sockets_on_every_instance(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    other = await second_session(server_a, alice)
    async with (
        raw_socket(server_a, subprotocol, alice.token) as on_a,
        raw_socket(server_b, subprotocol, alice.token) as on_b,
        raw_socket(server_a, subprotocol, other.token) as untouched,
    ):
        for socket in (on_a, on_b, untouched):
            await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id})
        await send(server_a, bob, room_id, "before")
        for socket in (on_a, on_b, untouched):
            assert (await socket.frame())["payload"]["data"]["messageAdded"]["text"] == "before"

        async with http_session(server_a, alice.token) as session:
            assert (await call(session, "mutation { logOut }"))["logOut"] is True
        # Sent at once: the instance that served logOut closed its sockets before it
        # answered, so nothing of this reaches them.
        await send(server_a, bob, room_id, "after")

        ending_a = await on_a.ending(CLOSE_WITHIN_SECONDS)
        assert_session_ended(on_a, ending_a)
        assert "after" not in texts(ending_a)
        ending_b = await on_b.ending(CLOSE_WITHIN_SECONDS)
        assert_session_ended(on_b, ending_b)

        await send(server_a, bob, room_id, "later")
        seen = [
            (await untouched.frame())["payload"]["data"]["messageAdded"]["text"] for _ in range(2)
        ]
        assert seen == ["after", "later"]
    async with http_session(server_b, alice.token) as session:
        assert await error_code(session, "{ me { id } }") == "UNAUTHENTICATED"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_log_out_closes_sockets_on_the_embedded_default(
    embedded_server: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(embedded_server), await sign_up(embedded_server)
    room_id = await direct_room(embedded_server, alice, bob)
    async with raw_socket(embedded_server, subprotocol, alice.token) as socket:
        await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id})
        async with http_session(embedded_server, alice.token) as session:
            await call(session, "mutation { logOut }")
        await send(embedded_server, bob, room_id, "after")
        ending = await socket.ending(CLOSE_WITHIN_SECONDS)
        assert_session_ended(socket, ending)
        assert ending.payloads() == []


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def short_session_server(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """Real services, sessions that last two seconds."""
    server = ServerProcess("short-sessions", {**real_env, "PLOP_SESSION_TTL_SECONDS": "2"})
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_an_expired_session_closes_its_sockets(
    short_session_server: ServerProcess, subprotocol: str
) -> None:
    alice = await sign_up(short_session_server)
    async with raw_socket(short_session_server, subprotocol, alice.token) as socket:
        await socket.subscribe("1", "subscription { roomAdded { id } }")
        # The session lives 2 s from sign-up; the socket must close soon after.
        ending = await socket.ending(within=2.0 + CLOSE_WITHIN_SECONDS)
        assert_session_ended(socket, ending)


async def test_a_revocation_whose_event_was_lost_closes_the_socket_at_the_next_check(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    """The session disappears from the store without an event (as when logOut's
    publish failed): the periodic check (presence heartbeat, 1 s here) closes it."""
    alice = await sign_up(server_a)
    async with raw_socket(server_a, LEGACY_WS, alice.token) as socket:
        await socket.subscribe("1", "subscription { roomAdded { id } }")
        key = "plop:session:" + hashlib.sha256(alice.token.encode()).hexdigest()
        redis = Redis.from_url(real_env["PLOP_REDIS_URL"])
        try:
            assert await redis.delete(key) == 1
        finally:
            await redis.aclose()
        ending = await socket.ending(within=1.0 + CLOSE_WITHIN_SECONDS + 1.0)
        assert_session_ended(socket, ending)
