"""What a client's mistakes and probes answer: a contract code, never INTERNAL, and
no ERROR in the server's log.

Ill-typed variables, cursors that Plop did not make, lone surrogates, subscriptions
sent over HTTP, display names that could pass for someone else's, and field names
that must not grow /metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import websockets

from services.messages import MESSAGE_CURSOR
from services.paging import encode_cursor
from services.rooms import ROOM_CURSOR
from tests.support.chat import HISTORY, ROOMS, group_room, send
from tests.support.clients import (
    SIGN_UP,
    TRANSPORT_WS,
    call,
    error_code,
    http_session,
    sign_up,
    unique_name,
    ws_session,
)
from tests.support.server import ServerProcess

LOGGED_ERROR = re.compile(r"\bERROR\b|Traceback")
A_ROOM_ID = "0123456789abcdef01234567"
PASSWORD = "correct horse battery"


@contextmanager
def nothing_logged_at_error(server: ServerProcess) -> Iterator[None]:
    """The block's requests leave no ERROR line and no traceback in the server's log."""
    start = server.log_size()
    yield
    logged = server.log_since(start)
    assert not LOGGED_ERROR.search(logged), logged[-4000:]


async def post_json(
    server: ServerProcess, payload: dict[str, Any], token: str | None = None
) -> httpx.Response:
    """A POST whose body is exactly ``json.dumps(payload)``: ASCII, lone surrogates escaped."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(server.http_url, content=json.dumps(payload), headers=headers)


def first_error(response: httpx.Response) -> dict[str, Any]:
    errors = response.json().get("errors")
    assert errors, response.text
    error: dict[str, Any] = errors[0]
    return error


# Each: a document and variables that do not coerce to the document's types.
ILL_TYPED_VARIABLES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "int-given-a-string",
        'query($n: Int) { searchUsers(query: "a", first: $n) { id } }',
        {"n": "x"},
    ),
    (
        "int-given-2-to-the-40",
        'query($n: Int) { searchUsers(query: "a", first: $n) { id } }',
        {"n": 2**40},
    ),
    (
        "int-given-a-float",
        'query($n: Int) { searchUsers(query: "a", first: $n) { id } }',
        {"n": 1.5},
    ),
    ("id-given-an-object", "query($i: ID!) { user(id: $i) { id } }", {"i": {"a": 1}}),
    ("non-null-given-null", "query($i: ID!) { user(id: $i) { id } }", {"i": None}),
    ("non-null-missing", "query($i: ID!) { user(id: $i) { id } }", {}),
    (
        "enum-given-an-unknown-value",
        'mutation($p: PushPlatform!) { registerPushDevice(platform: $p, token: "t") { id } }',
        {"p": "SMS"},
    ),
    (
        "boolean-given-a-string",
        'mutation($a: Boolean!) { respondToFriendRequest(requestId: "x", accept: $a) { id } }',
        {"a": "yes"},
    ),
    (
        "list-given-nested-lists",
        'mutation($m: [ID!]!) { createGroupRoom(title: "t", memberIds: $m) { id } }',
        {"m": [[["a"]]]},
    ),
    (
        "list-given-a-null-item",
        'mutation($m: [ID!]!) { createGroupRoom(title: "t", memberIds: $m) { id } }',
        {"m": [None]},
    ),
]


@pytest.mark.parametrize(
    ("query", "variables"), [pytest.param(q, v, id=name) for name, q, v in ILL_TYPED_VARIABLES]
)
async def test_ill_typed_variable_is_bad_user_input_over_http_without_a_login(
    embedded_server: ServerProcess, query: str, variables: dict[str, Any]
) -> None:
    with nothing_logged_at_error(embedded_server):
        error = first_error(
            await post_json(embedded_server, {"query": query, "variables": variables})
        )
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["message"].startswith("Variable '$"), error


async def test_ill_typed_variables_are_bad_user_input_over_websocket(
    embedded_server: ServerProcess,
) -> None:
    viewer = await sign_up(embedded_server)
    with nothing_logged_at_error(embedded_server):
        async with ws_session(embedded_server, TRANSPORT_WS, viewer.token) as session:
            for _, query, variables in ILL_TYPED_VARIABLES:
                assert await error_code(session, query, **variables) == "BAD_USER_INPUT"
            assert (await call(session, "{ __typename }"))["__typename"] == "Query"


def _message_cursor(number: str) -> str:
    return encode_cursor(MESSAGE_CURSOR, number)


# Numbers a cursor may not carry: only 1-18 ASCII digits are a seq or a time.
BAD_CURSOR_NUMBERS = [
    "\u0663",  # ARABIC-INDIC DIGIT THREE: isdigit() and int() take it
    "\u00b2",  # SUPERSCRIPT TWO: isdigit() takes it, int() does not
    "9" * 5_000,  # int() refuses past 4,300 digits
    "9" * 19,  # past a 64-bit integer
    "1_0",
    " 1",
    "+1",
    "-1",
    "",
]


async def test_message_cursor_plop_did_not_make_or_without_ascii_digits_is_not_valid(
    any_server: ServerProcess,
) -> None:
    owner, other = await sign_up(any_server), await sign_up(any_server)
    room_id = await group_room(any_server, owner, [other])
    for text in ("one", "two", "three"):
        await send(any_server, owner, room_id, text)
    cursors = [
        *(encode_cursor(MESSAGE_CURSOR, number) for number in BAD_CURSOR_NUMBERS),
        encode_cursor(ROOM_CURSOR, "1", A_ROOM_ID),  # another connection's
        "x" * 10_000,
        "!!!!",  # not base64
        "\u00e9t\u00e9",  # not ASCII
    ]
    with nothing_logged_at_error(any_server):
        for cursor in cursors:
            for paging in ({"first": 2, "after": cursor}, {"last": 2, "before": cursor}):
                response = await post_json(
                    any_server,
                    {"query": HISTORY, "variables": {"r": room_id, **paging}},
                    owner.token,
                )
                error = first_error(response)
                assert (error["extensions"]["code"], error["message"]) == (
                    "BAD_USER_INPUT",
                    "the cursor is not valid",
                ), (cursor[:40], error)
    # A cursor such as the server makes still pages.
    async with http_session(any_server, owner.token) as session:
        cursor = encode_cursor(MESSAGE_CURSOR, "1")
        page = await call(session, HISTORY, r=room_id, first=1, after=cursor)
    assert [edge["node"]["text"] for edge in page["messages"]["edges"]] == ["two"]


async def test_room_cursor_that_plop_did_not_make_is_not_valid(
    any_server: ServerProcess,
) -> None:
    viewer = await sign_up(any_server)
    cursors = [
        *(encode_cursor(ROOM_CURSOR, number, A_ROOM_ID) for number in BAD_CURSOR_NUMBERS),
        encode_cursor(ROOM_CURSOR, "9" * 18, A_ROOM_ID),  # after the year 9999
        encode_cursor(ROOM_CURSOR, "1", "not-an-id"),
        encode_cursor(ROOM_CURSOR, "1"),
        encode_cursor(MESSAGE_CURSOR, "1", A_ROOM_ID),
        "x" * 10_000,
    ]
    with nothing_logged_at_error(any_server):
        for cursor in cursors:
            response = await post_json(
                any_server,
                {"query": ROOMS, "variables": {"first": 5, "after": cursor}},
                viewer.token,
            )
            error = first_error(response)
            assert (error["extensions"]["code"], error["message"]) == (
                "BAD_USER_INPUT",
                "the cursor is not valid",
            ), (cursor[:40], error)


# Each: a document and variables with a lone surrogate somewhere in a string.
SURROGATE_VARIABLES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "sign-up-username",
        SIGN_UP,
        {"username": "s_\ud800", "password": PASSWORD, "displayName": "x"},
    ),
    (
        "sign-up-display-name",
        SIGN_UP,
        {"username": "s_plain", "password": PASSWORD, "displayName": "Al\udfffice"},
    ),
    ("search", "query($q: String!) { searchUsers(query: $q) { id } }", {"q": "\ud800"}),
    (
        "message-text",
        'mutation($t: String!) { sendMessage(roomId: "x", text: $t) { id } }',
        {"t": "hi \ud83d"},
    ),
    (
        "inside-a-list",
        'mutation($m: [ID!]!) { createGroupRoom(title: "t", memberIds: $m) { id } }',
        {"m": ["\udc00"]},
    ),
    ("variable-name", "{ __typename }", {"\ud800": "unused"}),
]


@pytest.mark.parametrize(
    ("query", "variables"), [pytest.param(q, v, id=name) for name, q, v in SURROGATE_VARIABLES]
)
async def test_lone_surrogate_in_a_variable_is_bad_user_input_over_http(
    embedded_server: ServerProcess, query: str, variables: dict[str, Any]
) -> None:
    viewer = await sign_up(embedded_server)
    with nothing_logged_at_error(embedded_server):
        response = await post_json(
            embedded_server, {"query": query, "variables": variables}, viewer.token
        )
    error = first_error(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "lone surrogate" in error["message"]


async def test_lone_surrogates_are_bad_user_input_over_websocket_and_the_socket_serves_on(
    embedded_server: ServerProcess,
) -> None:
    viewer = await sign_up(embedded_server)
    with nothing_logged_at_error(embedded_server):
        async with ws_session(embedded_server, TRANSPORT_WS, viewer.token) as session:
            for _, query, variables in SURROGATE_VARIABLES:
                assert await error_code(session, query, **variables) == "BAD_USER_INPUT"
            subscription = "subscription($r: ID!) { messageAdded(roomId: $r) { seq } }"
            assert await error_code(session, subscription, r="\ud800") == "BAD_USER_INPUT"
            assert (await call(session, "{ __typename }"))["__typename"] == "Query"


async def test_lone_surrogate_in_a_literal_or_the_operation_name_is_refused_cleanly(
    embedded_server: ServerProcess,
) -> None:
    with nothing_logged_at_error(embedded_server):
        literal = await post_json(
            embedded_server, {"query": '{ searchUsers(query: "\ud800") { id } }'}
        )
        named = await post_json(
            embedded_server, {"query": "{ __typename }", "operationName": "\ud800"}
        )
    assert first_error(literal)["extensions"]["code"] == "BAD_USER_INPUT"
    # An unknown operation name is refused by the HTTP layer, as any unknown name is.
    assert named.status_code == 400, named.text


async def test_lone_surrogate_token_in_connection_init_is_refused_as_unauthenticated(
    embedded_server: ServerProcess,
) -> None:
    with nothing_logged_at_error(embedded_server):
        async with websockets.connect(
            embedded_server.ws_url,
            subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        ) as socket:
            init = {"type": "connection_init", "payload": {"authToken": "\ud800"}}
            await socket.send(json.dumps(init))
            with pytest.raises(websockets.ConnectionClosed):
                async with asyncio.timeout(10):
                    await socket.recv()
    assert socket.close_code == 4403, socket.close_reason


async def test_subscription_over_http_is_bad_user_input(embedded_server: ServerProcess) -> None:
    viewer = await sign_up(embedded_server)
    with nothing_logged_at_error(embedded_server):
        for token in (None, viewer.token):
            response = await post_json(
                embedded_server, {"query": "subscription { roomAdded { id } }"}, token
            )
            error = first_error(response)
            assert error["extensions"]["code"] == "BAD_USER_INPUT", error
            assert "WebSocket" in error["message"]


async def _signed_up_display_name(server: ServerProcess, display_name: str) -> str:
    async with http_session(server) as session:
        data = await call(
            session,
            SIGN_UP,
            username=unique_name("dn"),
            password=PASSWORD,
            displayName=display_name,
        )
    shown: str = data["signUp"]["user"]["displayName"]
    return shown


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        pytest.param("\uff21\uff4c\uff49\uff43\uff45", "Alice", id="fullwidth-letters"),
        pytest.param("\ufb01ona", "fiona", id="ligature"),
        pytest.param("\uff76\uff80", "\u30ab\u30bf", id="halfwidth-katakana"),
        pytest.param("  Bob \u3000 Smith\u00a0", "Bob Smith", id="odd-spaces"),
        pytest.param("e\u0301", "\u00e9", id="combining-accent"),
        pytest.param("x" * 64, "x" * 64, id="64-characters"),
    ],
)
async def test_display_name_is_nfkc_normalised(
    embedded_server: ServerProcess, given: str, shown: str
) -> None:
    assert await _signed_up_display_name(embedded_server, given) == shown


REFUSED_DISPLAY_NAMES = [
    *(
        pytest.param(f"Al{char}ice", id=f"U+{ord(char):04X}")
        for char in (
            "\x00\x09\x0a\x1f\x7f\x85\x9f"
            "\u200b\u200c\u200d\u200e\u200f\u202a\u202d\u202e\u2060\u2064\u2066\ufeff"
        )
    ),
    pytest.param("", id="empty"),
    pytest.param(" \u3000 ", id="only-spaces"),
    pytest.param("x" * 65, id="65-characters"),
    pytest.param("\ufb01" * 33, id="66-characters-after-normalising"),
]


@pytest.mark.parametrize("given", REFUSED_DISPLAY_NAMES)
async def test_display_name_with_control_or_format_characters_or_bad_length_is_refused(
    embedded_server: ServerProcess, given: str
) -> None:
    with nothing_logged_at_error(embedded_server):
        async with http_session(embedded_server) as session:
            code = await error_code(
                session, SIGN_UP, username=unique_name("dn"), password=PASSWORD, displayName=given
            )
    assert code == "BAD_USER_INPUT"


async def test_display_name_rules_hold_over_websocket(embedded_server: ServerProcess) -> None:
    viewer = await sign_up(embedded_server)
    async with ws_session(embedded_server, TRANSPORT_WS, viewer.token) as session:
        spoof = {"username": unique_name("dn"), "password": PASSWORD, "displayName": "evil\u202e"}
        assert await error_code(session, SIGN_UP, **spoof) == "BAD_USER_INPUT"
        fine = {"username": unique_name("dn"), "password": PASSWORD, "displayName": "\uff21nn"}
        data = await call(session, SIGN_UP, **fine)
    assert data["signUp"]["user"]["displayName"] == "Ann"


async def _series(server: ServerProcess) -> set[str]:
    """The labelled series of Plop's GraphQL metrics, by name and labels."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{server.base_url}/metrics")).text
    return {
        line.rsplit(" ", 1)[0]
        for line in text.splitlines()
        if line.startswith("plop_graphql_") and "{" in line
    }


async def test_bogus_field_and_operation_names_add_no_metric_series(
    embedded_server: ServerProcess,
) -> None:
    documents = [
        "{ zzzBogus%d }",
        "query Probe%d { __typename }",
        "{ ...Frag%d } fragment Frag%d on Query { zzz }",
        "mutation { zzzBogus%d }",
        "{ zzzBogus%d { a } }",
    ]

    async def probe(client: httpx.AsyncClient, number: int) -> None:
        document = documents[number % len(documents)].replace("%d", str(number))
        response = await client.post(embedded_server.http_url, json={"query": document})
        assert response.status_code == 200, response.text
        codes = {error["extensions"]["code"] for error in response.json().get("errors", [])}
        assert codes <= {"BAD_USER_INPUT"}, response.text

    limit = asyncio.Semaphore(8)

    async def limited(client: httpx.AsyncClient, number: int) -> None:
        async with limit:
            await probe(client, number)

    async with httpx.AsyncClient(timeout=30) as client:
        for number in range(len(documents)):  # each kind of probe once, for its series
            await probe(client, number)
        before = await _series(embedded_server)
        await asyncio.gather(*(limited(client, number) for number in range(len(documents), 1_000)))
    after = await _series(embedded_server)
    assert after == before, sorted(after - before)[:10]
    assert not any("Bogus" in series or "Probe" in series for series in after)
