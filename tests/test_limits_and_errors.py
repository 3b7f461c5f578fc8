"""GraphQL limits, request caps, and the error codes a client sees."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
import websockets
from graphql import GraphQLError

from schema.errors import INTERNAL_MESSAGE, with_code
from tests.support.clients import (
    SIGN_UP,
    TRANSPORT_WS,
    error_code,
    http_session,
    sign_up,
    unique_name,
)
from tests.support.server import ServerProcess
from tests.support.services import RealServices
from tests.support.tcp_proxy import TcpProxy


async def _post(server: ServerProcess, body: bytes, token: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(server.http_url, content=body, headers=headers)


async def test_request_body_over_64_kib_gets_a_graphql_error(
    embedded_server: ServerProcess,
) -> None:
    padding = "x" * (65 * 1024)
    body = json.dumps({"query": "{ me { id } }", "variables": {"pad": padding}}).encode()
    response = await _post(embedded_server, body)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_request_body_under_the_cap_is_served(embedded_server: ServerProcess) -> None:
    body = json.dumps({"query": "{ me { id } }", "variables": {"pad": "x" * 60_000}}).encode()
    response = await _post(embedded_server, body)
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_websocket_message_over_64_kib_closes_the_socket(
    embedded_server: ServerProcess,
) -> None:
    viewer = await sign_up(embedded_server)
    async with websockets.connect(embedded_server.ws_url, subprotocols=[TRANSPORT_WS]) as socket:  # type: ignore[list-item]
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"authToken": viewer.token}})
        )
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(json.dumps({"type": "ping", "payload": {"pad": "x" * (65 * 1024)}}))
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                await socket.recv()
    assert socket.close_code == 1009  # message too big


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def strict_server() -> AsyncIterator[ServerProcess]:
    """An embedded server with small GraphQL limits, so that each is easy to cross."""
    server = ServerProcess(
        "strict-limits",
        {"PLOP_MAX_QUERY_DEPTH": "3", "PLOP_MAX_ALIASES": "2", "PLOP_MAX_QUERY_TOKENS": "80"},
    )
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize(
    ("query", "served"),
    [
        # Depth counts from 0 at the root field.
        ("{ rooms { edges { node { id } } } }", True),  # depth 3
        ("{ rooms { edges { node { members { id } } } } }", False),  # depth 4 > 3
        ("{ a: me { id } b: me { id } }", True),  # 2 aliases
        ("{ a: me { id } b: me { id } c: me { id } }", False),  # 3 aliases > 2
        ("{ me { id " + "username " * 80 + "} }", False),  # over 80 tokens
    ],
)
async def test_query_limits_refuse_with_bad_user_input(
    strict_server: ServerProcess, query: str, served: bool
) -> None:
    viewer = await sign_up(strict_server)
    response = await _post(strict_server, json.dumps({"query": query}).encode(), viewer.token)
    errors = response.json().get("errors")
    if served:
        assert not errors, errors
    else:
        assert errors and errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors


async def test_syntax_error_is_bad_user_input(embedded_server: ServerProcess) -> None:
    response = await _post(embedded_server, json.dumps({"query": "{ me { id "}).encode())
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_unknown_field_is_bad_user_input(embedded_server: ServerProcess) -> None:
    viewer = await sign_up(embedded_server)
    async with http_session(embedded_server, viewer.token) as session:
        assert await error_code(session, "{ me { password } }") == "BAD_USER_INPUT"


def test_unexpected_exception_is_masked_as_internal() -> None:
    leaked = GraphQLError("boom", original_error=KeyError("secret_internal_detail"))
    shown = with_code(leaked)
    assert shown.message == INTERNAL_MESSAGE
    assert shown.extensions == {"code": "INTERNAL"}
    assert "secret" not in str(shown.formatted)


def test_backend_errors_become_unavailable() -> None:
    from pymongo.errors import ServerSelectionTimeoutError
    from redis.exceptions import ConnectionError as RedisConnectionError

    for error in (ServerSelectionTimeoutError("no server"), RedisConnectionError("refused")):
        shown = with_code(GraphQLError("x", original_error=error))
        assert shown.extensions == {"code": "UNAVAILABLE"}
        assert "refused" not in shown.message and "no server" not in shown.message


async def test_redis_down_gives_unavailable_not_a_hang(real_services: RealServices) -> None:
    # Redis must answer at start (or the server does not start): it goes away after.
    target = urlsplit(real_services.redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    server = ServerProcess(
        "redis-down",
        {
            "PLOP_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
            "PLOP_BACKEND_TIMEOUT_SECONDS": "1",
        },
    )
    try:
        await server.start()
        await proxy.stop()
        async with asyncio.timeout(15), http_session(server) as session:
            code = await error_code(
                session, SIGN_UP, username=unique_name(), password="correct horse battery"
            )
        assert code == "UNAVAILABLE"
    finally:
        await server.stop()
        await proxy.stop()
