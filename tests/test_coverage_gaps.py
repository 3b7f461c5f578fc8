"""Rules no other test covered: authentication on every operation, markRead's access,
roomUpdated after leaveRoom, the default GraphQL and size limits at their edges,
and the database going away under a running server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import websockets
from gql.transport.exceptions import TransportQueryError
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
    build_client_schema,
    get_introspection_query,
    get_named_type,
    is_composite_type,
)

from tests.support.chat import (
    LEAVE,
    MARK_READ,
    ROOM_UPDATED,
    SEND,
    as_user,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.server import ServerProcess, free_port

# Operations a client calls before it has a token.
OPEN_OPERATIONS = frozenset({"Mutation.signUp", "Mutation.logIn"})
# Dummy argument values by scalar type; an ID has the shape of a real one.
DUMMY_SCALARS: dict[str, object] = {
    "ID": "0123456789abcdef01234567",
    "String": "x",
    "Int": 1,
    "Float": 1.0,
    "Boolean": True,
    "DateTime": "2026-01-01T00:00:00+00:00",
}


async def post(server: ServerProcess, body: bytes, token: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(server.http_url, content=body, headers=headers)


async def served_schema(server: ServerProcess, token: str) -> GraphQLSchema:
    """The schema as the server describes it by introspection."""
    response = await post(server, json.dumps({"query": get_introspection_query()}).encode(), token)
    return build_client_schema(response.json()["data"])


def dummy(type_: GraphQLInputType) -> object:
    """A value of this input type, with every required input field filled in."""
    if isinstance(type_, GraphQLNonNull):
        return dummy(type_.of_type)
    if isinstance(type_, GraphQLList):
        return [dummy(type_.of_type)]
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {
            name: dummy(field.type)
            for name, field in type_.fields.items()
            if isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined
        }
    assert isinstance(type_, GraphQLScalarType)
    return DUMMY_SCALARS.get(type_.name, "x")


def operation_for(kind: str, name: str, root: GraphQLObjectType) -> tuple[str, dict[str, object]]:
    """A document calling the field with dummy values for its required arguments."""
    field = root.fields[name]
    required = {
        arg_name: arg
        for arg_name, arg in field.args.items()
        if isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
    }
    declared = ", ".join(f"${arg_name}: {arg.type}" for arg_name, arg in required.items())
    passed = ", ".join(f"{arg_name}: ${arg_name}" for arg_name in required)
    selection = " { __typename }" if is_composite_type(get_named_type(field.type)) else ""
    document = (
        f"{kind}{f'({declared})' if declared else ''} "
        f"{{ {name}{f'({passed})' if passed else ''}{selection} }}"
    )
    return document, {arg_name: dummy(arg.type) for arg_name, arg in required.items()}


async def test_every_query_and_mutation_without_a_token_is_unauthenticated(
    embedded_server: ServerProcess,
) -> None:
    schema = await served_schema(embedded_server, (await sign_up(embedded_server)).token)
    assert schema.query_type is not None and schema.mutation_type is not None
    checked: list[str] = []
    wrong: list[str] = []
    for kind, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        for name in root.fields:
            path = f"{root.name}.{name}"
            if path in OPEN_OPERATIONS:
                continue
            document, variables = operation_for(kind, name, root)
            body = json.dumps({"query": document, "variables": variables}).encode()
            errors = (await post(embedded_server, body)).json().get("errors") or []
            codes = [error.get("extensions", {}).get("code") for error in errors]
            checked.append(path)
            if codes != ["UNAUTHENTICATED"]:
                wrong.append(f"{path}: {codes} for {document}")
    # New fields are covered by themselves; these show the list was really read.
    assert {"Query.me", "Query.messages", "Mutation.sendMessage", "Mutation.markRead"} <= set(
        checked
    )
    assert not wrong, "answered other than UNAUTHENTICATED without a token:\n" + "\n".join(wrong)


async def test_mark_read_by_a_non_member_and_by_a_leaver_is_forbidden(
    server_a: ServerProcess,
) -> None:
    owner, member, stranger = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, owner, [member])
    await send(server_a, owner, room_id, "one")
    # The control: a member may.
    marked = await as_user(server_a, member, MARK_READ, r=room_id, s=1)
    assert marked["markRead"] == {"lastReadSeq": 1, "unreadCount": 0}
    async with http_session(server_a, stranger.token) as session:
        assert await error_code(session, MARK_READ, r=room_id, s=1) == "FORBIDDEN"
    await as_user(server_a, member, LEAVE, r=room_id)
    await send(server_a, owner, room_id, "two")
    async with http_session(server_a, member.token) as session:
        assert await error_code(session, MARK_READ, r=room_id, s=2) == "FORBIDDEN"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_room_updated_stops_after_leave_room(
    server_a: ServerProcess, subprotocol: str
) -> None:
    leaver, owner = await sign_up(server_a), await sign_up(server_a)
    left = await group_room(server_a, owner, [leaver], "to leave")
    kept = await direct_room(server_a, owner, leaver)
    async with (
        ws_session(server_a, subprotocol, leaver.token) as session,
        subscribed(server_a, session, ROOM_UPDATED) as updates,
    ):
        await send(server_a, owner, left, "while a member")
        update = (await updates.next())["roomUpdated"]
        assert (update["id"], update["lastSeq"]) == (left, 1)  # the control: it fires
        await as_user(server_a, leaver, LEAVE, r=left)
        await send(server_a, owner, left, "after leaving")
        # Sent after the one above: the next update for the kept room sweeps anything
        # the left room would have sent the leaver.
        await send(server_a, owner, kept, "still here")
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while not seen or seen[-1]["id"] != kept:
                seen.append((await updates.next())["roomUpdated"])
    leaked = [u for u in seen if u["id"] == left and u["lastSeq"] >= 2]
    assert leaked == [], f"the leaver still hears the room: {leaked}"


async def test_deepest_served_query_is_accepted(embedded_server: ServerProcess) -> None:
    viewer = await sign_up(embedded_server)
    deepest = "{ rooms { edges { node { lastMessage { sender { presence { userId } } } } } } }"
    response = await post(embedded_server, json.dumps({"query": deepest}).encode(), viewer.token)
    assert "errors" not in response.json(), response.json()


def nested(depth: int) -> str:
    """A document of the given depth (counted from 0 at the root field)."""
    return "{ " + "f { " * depth + "leaf" + " }" * (depth + 1)


@pytest.mark.parametrize(("depth", "refused"), [(12, False), (13, True)])
async def test_default_depth_limit_is_12(
    embedded_server: ServerProcess, depth: int, refused: bool
) -> None:
    # No field path of the served schema is 12 deep (the deepest is 6), so the limit
    # shows in which errors a document of unknown fields gets.
    response = await post(embedded_server, json.dumps({"query": nested(depth)}).encode())
    errors = response.json()["errors"]
    assert {error["extensions"]["code"] for error in errors} == {"BAD_USER_INPUT"}
    over = [e for e in errors if "exceeds maximum operation depth of 12" in e["message"]]
    assert bool(over) is refused, errors


@pytest.mark.parametrize(("aliases", "served"), [(30, True), (31, False)])
async def test_default_alias_limit_is_30(
    embedded_server: ServerProcess, aliases: int, served: bool
) -> None:
    viewer = await sign_up(embedded_server)
    query = "{ " + " ".join(f"a{n}: me {{ id }}" for n in range(aliases)) + " }"
    errors = (
        (await post(embedded_server, json.dumps({"query": query}).encode(), viewer.token))
        .json()
        .get("errors")
    )
    if served:
        assert not errors, errors
    else:
        assert errors and errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors


def document_of(tokens: int) -> str:
    """A document of exactly ``tokens`` tokens: operations of eight each
    (``query Qn { me { id } }``), the first with a field or two more.

    Many operations rather than one long selection: graphql-core aborts validation
    of a selection that repeats a field a thousand times, whatever the limit.
    """
    operations, extra = divmod(tokens, 8)
    assert extra <= 2
    first = " ".join(["id", "username", "displayName"][: extra + 1])
    return " ".join(
        f"query Q{n} {{ me {{ {first if n == 0 else 'id'} }} }}" for n in range(operations)
    )


@pytest.mark.parametrize(("tokens", "served"), [(2_000, True), (2_001, False)])
async def test_default_token_limit_is_2000(
    embedded_server: ServerProcess, tokens: int, served: bool
) -> None:
    viewer = await sign_up(embedded_server)
    body = json.dumps({"query": document_of(tokens), "operationName": "Q0"}).encode()
    response = (await post(embedded_server, body, viewer.token)).json()
    if served:
        assert "errors" not in response and response["data"]["me"]["id"] == viewer.id, response
    else:
        errors = response.get("errors")
        assert errors and errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors
        assert "more than 2000 tokens" in errors[0]["message"], errors


def body_of(size: int) -> bytes:
    """A JSON request of exactly ``size`` bytes, padded in an unused variable."""
    empty = json.dumps({"query": "{ me { id } }", "variables": {"pad": ""}}).encode()
    body = json.dumps(
        {"query": "{ me { id } }", "variables": {"pad": "x" * (size - len(empty))}}
    ).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize(("size", "served"), [(64 * 1024, True), (64 * 1024 + 1, False)])
async def test_default_request_body_cap_is_64_kib(
    embedded_server: ServerProcess, size: int, served: bool
) -> None:
    viewer = await sign_up(embedded_server)
    response = await post(embedded_server, body_of(size), viewer.token)
    if served:
        assert response.status_code == 200 and "errors" not in response.json(), response.text
    else:
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def ping_of(size: int) -> str:
    """A graphql-transport-ws ping of exactly ``size`` bytes."""
    empty = json.dumps({"type": "ping", "payload": {"pad": ""}})
    frame = json.dumps({"type": "ping", "payload": {"pad": "x" * (size - len(empty))}})
    assert len(frame.encode()) == size
    return frame


@pytest.mark.parametrize(("size", "served"), [(64 * 1024, True), (64 * 1024 + 1, False)])
async def test_default_websocket_message_cap_is_64_kib(
    embedded_server: ServerProcess, size: int, served: bool
) -> None:
    viewer = await sign_up(embedded_server)
    async with websockets.connect(
        embedded_server.ws_url,
        subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        max_size=None,
    ) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"authToken": viewer.token}})
        )
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(ping_of(size))
        if served:
            async with asyncio.timeout(10):
                assert json.loads(await socket.recv())["type"] == "pong"
            return
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                await socket.recv()
    # A frame over the cap is refused by the WebSocket layer before any GraphQL
    # handling: the close code says why.
    assert socket.close_code == 1009  # message too big


class TcpProxy:
    """Forwards a loopback port to another; stopping it cuts every connection."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


@asynccontextmanager
async def proxied(port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        if proxy._server is not None and proxy._server.is_serving():
            await proxy.stop()


# A backend that is gone answers UNAVAILABLE within the backend timeout (5 s by default).
UNAVAILABLE_WITHIN_SECONDS = 10.0
RECOVERY_WITHIN_SECONDS = 30.0


async def sent_or_code(server: ServerProcess, sender: Account, room_id: str, text: str) -> str:
    """``sent`` if the message was stored, else the error's code."""
    async with http_session(server, sender.token) as session:
        try:
            await call(session, SEND, r=room_id, t=text, c=None)
        except TransportQueryError as exc:
            return str((exc.errors or [{}])[0].get("extensions", {}).get("code"))
    return "sent"


async def test_database_down_answers_unavailable_then_recovers(
    real_env: dict[str, str],
) -> None:
    mongo = urlsplit(real_env["PLOP_MONGO_URL"])
    assert mongo.port is not None
    async with proxied(mongo.port) as proxy:
        url = urlunsplit(mongo._replace(netloc=f"127.0.0.1:{proxy.port}"))
        server = ServerProcess(
            "database-down", {**real_env, "PLOP_MONGO_URL": url, "PLOP_INSTANCE_ID": "db-down"}
        )
        await server.start()
        try:
            alice, bob = await sign_up(server), await sign_up(server)
            room_id = await direct_room(server, alice, bob)
            assert await sent_or_code(server, alice, room_id, "before") == "sent"
            await proxy.stop()
            started = time.monotonic()
            async with asyncio.timeout(UNAVAILABLE_WITHIN_SECONDS):
                code = await sent_or_code(server, alice, room_id, "while down")
            assert code == "UNAVAILABLE", f"answered {code} with the database down"
            assert time.monotonic() - started < UNAVAILABLE_WITHIN_SECONDS
            await proxy.start()
            async with asyncio.timeout(RECOVERY_WITHIN_SECONDS):
                # The driver reconnects on its own schedule: each try is answered
                # (UNAVAILABLE until then), and the first that stores ends the wait.
                while (code := await sent_or_code(server, alice, room_id, "after")) != "sent":
                    assert code == "UNAVAILABLE", code
        finally:
            await server.stop()
