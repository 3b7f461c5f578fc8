"""Sockets are authenticated at connection_init on both subprotocols, or refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import websockets

from tests.support.chat import group_room
from tests.support.clients import (
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Account,
    call,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.server import ServerProcess

ROOM_ADDED = "subscription { roomAdded { id title members { id } } }"


async def _group_with(server: ServerProcess, member: Account, title: str) -> str:
    """A group of a new user with the member in it (a friend, so added at once)."""
    return await group_room(server, await sign_up(server), [member], title)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("payload_style", ["authToken", "Authorization"])
async def test_valid_token_in_connection_init_serves_subscriptions(
    any_server: ServerProcess, subprotocol: str, payload_style: str
) -> None:
    viewer = await sign_up(any_server)
    payload = (
        {"authToken": viewer.token}
        if payload_style == "authToken"
        else {"Authorization": f"Bearer {viewer.token}"}
    )
    async with (
        ws_session(any_server, subprotocol, init_payload=payload) as session,
        subscribed(any_server, session, ROOM_ADDED) as added,
    ):
        room_id = await _group_with(any_server, viewer, "hello")
        event = await added.next()
    assert event["roomAdded"]["id"] == room_id
    assert viewer.id in {member["id"] for member in event["roomAdded"]["members"]}


async def _refused(server: ServerProcess, subprotocol: str, payload: dict[str, Any]) -> str:
    """Opens a raw socket, sends connection_init, returns how the server refused it."""
    async with websockets.connect(server.ws_url, subprotocols=[subprotocol]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        seen: list[str] = []
        try:
            async with asyncio.timeout(10):
                async for frame in socket:
                    message = json.loads(frame)
                    seen.append(message["type"])
                    assert message["type"] != "connection_ack", "refused socket was acknowledged"
                    if message["type"] == "connection_error":
                        assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
        except websockets.ConnectionClosed:
            pass
        assert socket.close_code is not None
        # The refused socket is never served: a subscribe is not answered with data.
        return f"{socket.close_code}:{','.join(seen)}"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("token", [None, "garbage", "Bearer-looking.but.wrong"])
async def test_missing_or_garbage_token_is_refused_at_connection_init(
    any_server: ServerProcess, subprotocol: str, token: str | None
) -> None:
    outcome = await _refused(any_server, subprotocol, {"authToken": token} if token else {})
    if subprotocol == TRANSPORT_WS:
        assert outcome.startswith("4403:")
    else:
        assert outcome.endswith("connection_error")


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_revoked_token_cannot_open_a_new_socket(
    any_server: ServerProcess, subprotocol: str
) -> None:
    viewer = await sign_up(any_server)
    async with http_session(any_server, viewer.token) as session:
        await call(session, "mutation { logOut }")
    outcome = await _refused(any_server, subprotocol, {"authToken": viewer.token})
    assert (
        outcome.startswith("4403:")
        if subprotocol == TRANSPORT_WS
        else "connection_error" in outcome
    )


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_subscribe_before_connection_init_is_refused(
    any_server: ServerProcess, subprotocol: str
) -> None:
    start = "subscribe" if subprotocol == TRANSPORT_WS else "start"
    async with websockets.connect(any_server.ws_url, subprotocols=[subprotocol]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": start, "id": "1", "payload": {"query": ROOM_ADDED}}))
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                async for frame in socket:
                    assert json.loads(frame)["type"] not in ("next", "data")
    assert socket.close_code == 4401


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def quick_init_server() -> AsyncIterator[ServerProcess]:
    """An embedded server whose connection_init deadline is one second."""
    server = ServerProcess("quick-init", {"PLOP_CONNECTION_INIT_TIMEOUT_SECONDS": "1"})
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_socket_without_connection_init_is_closed_at_the_deadline(
    quick_init_server: ServerProcess, subprotocol: str
) -> None:
    async with websockets.connect(quick_init_server.ws_url, subprotocols=[subprotocol]) as socket:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                await socket.recv()
    assert socket.close_code == 4408


async def test_connection_init_deadline_defaults_to_ten_seconds() -> None:
    from settings import Settings

    assert Settings().connection_init_timeout_seconds == 10.0
