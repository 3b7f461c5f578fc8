"""Malformed requests and socket messages get a clear refusal, never a server error
or a hang: JSON nested past the parser's depth, messages that are not objects, and
operations whose fields have the wrong types."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.support.chat import direct_room
from tests.support.clients import (
    LEGACY_WS,
    TRANSPORT_WS,
    active_subscriptions,
    sign_up,
    wait_active_subscriptions,
)
from tests.support.raw_socket import raw_socket
from tests.support.server import ServerProcess

DEEP = "[" * 30_000 + "]" * 30_000  # under the 64 KiB cap, past Python's recursion limit


async def test_json_nested_too_deeply_is_a_400_over_http(embedded_server: ServerProcess) -> None:
    offset = embedded_server.log_size()
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            embedded_server.http_url, content=DEEP, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert "Traceback" not in embedded_server.log_since(offset)


async def test_a_socket_message_nested_too_deeply_closes_with_4400(
    embedded_server: ServerProcess,
) -> None:
    offset = embedded_server.log_size()
    async with websockets.connect(embedded_server.ws_url, subprotocols=[TRANSPORT_WS]) as socket:  # type: ignore[list-item]
        await socket.send(DEEP)
        async with asyncio.timeout(10):
            try:
                await socket.recv()
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4400
            else:
                raise AssertionError("the socket stayed open")
    assert "Traceback" not in embedded_server.log_since(offset)


async def test_operations_of_the_wrong_shape_close_a_graphql_transport_ws_socket(
    embedded_server: ServerProcess,
) -> None:
    user = await sign_up(embedded_server)
    offset = embedded_server.log_size()
    for bad in (
        [1],
        {"id": "1", "type": "subscribe", "payload": {"query": 123}},
        {"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }", "variables": [1]}},
        {"id": 7, "type": "subscribe", "payload": {"query": "{ me { id } }"}},
    ):
        async with raw_socket(embedded_server, TRANSPORT_WS, user.token) as socket:
            await socket._connection.send(json.dumps(bad))
            ending = await socket.ending(within=10)
            assert ending.code == 4400, (bad, ending)
    assert "Traceback" not in embedded_server.log_since(offset)


async def test_operations_of_the_wrong_shape_are_refused_on_graphql_ws_and_it_serves_on(
    embedded_server: ServerProcess,
) -> None:
    user = await sign_up(embedded_server)
    offset = embedded_server.log_size()
    async with raw_socket(embedded_server, LEGACY_WS, user.token) as socket:
        await socket._connection.send(
            json.dumps({"id": "1", "type": "start", "payload": {"query": 123}})
        )
        refused = await socket.frame()
        assert refused["type"] == "error" and refused["id"] == "1"
        assert refused["payload"]["extensions"]["code"] == "BAD_USER_INPUT"
        before = await active_subscriptions(embedded_server)
        await socket.subscribe("2", "subscription { roomAdded { id } }")
        await wait_active_subscriptions(embedded_server, before + 1)
        other = await sign_up(embedded_server)
        room_id = await direct_room(embedded_server, other, user)
        answer = await socket.frame()
        assert answer["type"] == "data", answer
        assert answer["payload"]["data"]["roomAdded"]["id"] == room_id
    assert "Traceback" not in embedded_server.log_since(offset)
