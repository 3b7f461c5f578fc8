"""The server's edge: a GraphQL POST goes straight to the view with everything the
routed way gave it (request id, log line, JSON both ways), anything else is routed
as before; and a document's cost is kept only when no variable sizes it."""

from __future__ import annotations

import json

import httpx
from graphql import parse

from schema.documents import DocumentRules
from schema.root import build_schema
from tests.support.chat import SEND, as_user, group_room
from tests.support.clients import sign_up
from tests.support.server import ServerProcess

ROOMS_PAGE = "query($n: Int) { rooms(first: $n) { edges { node { id members { id } } } } }"


async def test_a_graphql_post_keeps_its_request_id_and_log_line(
    embedded_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            embedded_server.http_url,
            json={"query": "query Edge { __typename }"},
            headers={"x-request-id": "edge-7.a"},
        )
        # The first request's line is written as its answer ends, before this
        # connection's next request is read.
        await client.post(embedded_server.http_url, json={"query": "{ __typename }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}
    assert response.headers["x-request-id"] == "edge-7.a"
    assert response.headers["content-type"].startswith("application/json")
    line = next(
        line
        for line in embedded_server.log_path.read_text().splitlines()
        if "request_id=edge-7.a" in line
    )
    assert "operation=Edge" in line and "path=/graphql" in line and "status=200" in line


async def test_other_paths_and_methods_are_routed_as_before(
    embedded_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        slash = await client.post(embedded_server.http_url + "/", json={"query": "{ __typename }"})
        page = await client.get(embedded_server.http_url, headers={"accept": "text/html"})
        missing = await client.post(embedded_server.base_url + "/nothing-here", json={})
    # FastAPI's routing: the trailing slash is redirected, GraphiQL is served, and an
    # unknown path is 404, each with the request id the edge gives every answer.
    assert slash.status_code == 307
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert missing.status_code == 404
    assert all("x-request-id" in r.headers for r in (slash, page, missing))


async def test_text_beyond_ascii_goes_both_ways_as_utf_8(embedded_server: ServerProcess) -> None:
    owner = await sign_up(embedded_server)
    room = await group_room(embedded_server, owner, [])
    text = "héllo 😀 — 中文"
    sent = await as_user(embedded_server, owner, SEND, r=room, t=text)
    assert sent["sendMessage"]["text"] == text
    body = json.dumps(
        {
            "query": "query($r: ID!) { room(id: $r) { lastMessage { text } } }",
            "variables": {"r": room},
        },
        ensure_ascii=False,
    ).encode()
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            embedded_server.http_url,
            content=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {owner.token}"},
        )
    assert response.json()["data"]["room"]["lastMessage"]["text"] == text
    assert text.encode() in response.content  # as UTF-8, not as \\u escapes


async def test_an_integer_past_64_bits_is_bad_user_input(embedded_server: ServerProcess) -> None:
    owner = await sign_up(embedded_server)
    body = '{"query": "query($n: Int) { rooms(first: $n) { edges { cursor } } }", '
    body += '"variables": {"n": 123456789012345678901234567890}}'
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            embedded_server.http_url,
            content=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {owner.token}"},
        )
    errors = response.json()["errors"]
    assert [error["extensions"]["code"] for error in errors] == ["BAD_USER_INPUT"]


def test_a_cost_is_kept_per_text_only_when_no_variable_sizes_it() -> None:
    schema = build_schema()._schema
    rules = DocumentRules(8, 10_000, 5_000, [])
    fixed = "{ rooms(first: 2) { edges { node { id } } } }"
    first = rules.cost(schema, fixed, parse(fixed), None, None)
    # The kept cost answers for the text, whatever document object comes with it.
    bigger = parse("{ rooms(first: 50) { edges { node { id } } } }")
    assert rules.cost(schema, fixed, bigger, None, None) == first
    small = rules.cost(schema, ROOMS_PAGE, parse(ROOMS_PAGE), None, {"n": 1})
    large = rules.cost(schema, ROOMS_PAGE, parse(ROOMS_PAGE), None, {"n": 40})
    assert large > small
