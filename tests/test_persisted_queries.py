"""Automatic persisted queries (Apollo's protocol) over HTTP and both WebSocket
subprotocols: a miss, then the registration, then hits; wrong and malformed hashes,
oversize documents, a registration flood, GET for queries only."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.chat import MESSAGE_ADDED, SEND, as_user, direct_room
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    metric,
    sign_up,
)
from tests.support.persisted import (
    error_code_of,
    fresh_query,
    get,
    persisted,
    post,
    sha256_of,
    socket_error_code,
    socket_operation,
)
from tests.support.raw_socket import RawSocket, raw_socket
from tests.support.server import ServerProcess

HITS = 'plop_persisted_queries_total{outcome="hit"}'
REGISTERED = 'plop_persisted_queries_total{outcome="registered"}'
# The limited server's caps: registrations per client address, and document size.
REGISTRATIONS = 3
MAX_DOCUMENT_BYTES = 1_024


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited_server() -> AsyncIterator[ServerProcess]:
    """An embedded server with a small registration budget and document cap."""
    server = ServerProcess(
        f"apq-limited-{secrets.token_hex(3)}",
        {
            "PLOP_PERSIST_QUERY_LIMIT": str(REGISTRATIONS),
            "PLOP_PERSIST_QUERY_LIMIT_SECONDS": "3600",
            "PLOP_APQ_MAX_DOCUMENT_BYTES": str(MAX_DOCUMENT_BYTES),
        },
    )
    await server.start()
    yield server
    await server.stop()


async def test_a_hash_alone_misses_then_registers_with_its_query_then_hits(
    embedded_server: ServerProcess,
) -> None:
    query = fresh_query()
    sha = sha256_of(query)
    miss = await post(embedded_server, {"extensions": persisted(sha)})
    assert error_code_of(miss) == "PERSISTED_QUERY_NOT_FOUND"
    assert miss["errors"][0]["message"] == "PersistedQueryNotFound"  # what Apollo's link reads

    registered_before = await metric(embedded_server, REGISTERED)
    first = await post(embedded_server, {"query": query, "extensions": persisted(sha)})
    assert first == {"data": {"__typename": "Query"}}
    assert await metric(embedded_server, REGISTERED) == registered_before + 1

    hits_before = await metric(embedded_server, HITS)
    again = await post(embedded_server, {"extensions": persisted(sha)})
    assert again == {"data": {"__typename": "Query"}}
    assert await metric(embedded_server, HITS) == hits_before + 1


async def test_a_document_registered_on_one_instance_is_held_in_redis_for_another(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    account = await sign_up(server_a, "apq")
    query = f"query Me_{secrets.token_hex(6)} {{ me {{ id username }} }}"
    sha = sha256_of(query)
    registered = await post(server_a, {"query": query, "extensions": persisted(sha)}, account.token)
    assert registered["data"]["me"]["id"] == account.id
    # B never saw the text: it can only have it from Redis.
    hit = await post(server_b, {"extensions": persisted(sha)}, account.token)
    assert hit == {"data": {"me": {"id": account.id, "username": account.username}}}
    # The document runs as its sender: no one else's data comes with the hash.
    other = await sign_up(server_a, "apq")
    theirs = await post(server_b, {"extensions": persisted(sha)}, other.token)
    assert theirs["data"]["me"]["id"] == other.id
    anonymous = await post(server_b, {"extensions": persisted(sha)})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_wrong_hash_is_refused_and_stores_nothing(embedded_server: ServerProcess) -> None:
    query = fresh_query()
    wrong = sha256_of(query + " ")
    refused = await post(embedded_server, {"query": query, "extensions": persisted(wrong)})
    assert error_code_of(refused) == "BAD_USER_INPUT"
    assert "does not match" in refused["errors"][0]["message"]
    for sha in (wrong, sha256_of(query)):
        miss = await post(embedded_server, {"extensions": persisted(sha)})
        assert error_code_of(miss) == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": {"version": 1, "sha256Hash": "not-a-hash"}},
        {"persistedQuery": {"version": 1, "sha256Hash": "A" * 64}},
        {"persistedQuery": {"version": 1, "sha256Hash": 12}},
        {"persistedQuery": {"version": 2, "sha256Hash": "a" * 64}},
        {"persistedQuery": "a" * 64},
    ],
)
async def test_an_ill_formed_persisted_query_is_bad_user_input(
    embedded_server: ServerProcess, extensions: dict[str, object]
) -> None:
    for body in ({"extensions": extensions}, {"query": fresh_query(), "extensions": extensions}):
        assert error_code_of(await post(embedded_server, body)) == "BAD_USER_INPUT"


async def test_an_oversize_document_is_refused_and_not_stored(
    limited_server: ServerProcess,
) -> None:
    query = fresh_query(MAX_DOCUMENT_BYTES + 1)
    sha = sha256_of(query)
    refused = await post(limited_server, {"query": query, "extensions": persisted(sha)})
    assert error_code_of(refused) == "BAD_USER_INPUT"
    assert f"at most {MAX_DOCUMENT_BYTES} bytes" in refused["errors"][0]["message"]
    miss = await post(limited_server, {"extensions": persisted(sha)})
    assert error_code_of(miss) == "PERSISTED_QUERY_NOT_FOUND"
    # The same text without a hash runs as any query does.
    assert (await post(limited_server, {"query": query}))["data"] == {"__typename": "Query"}


async def test_a_registration_flood_is_rate_limited_on_http_and_both_subprotocols(
    limited_server: ServerProcess,
) -> None:
    """The budget is per client address, whatever carries the registrations."""
    account = await sign_up(limited_server, "apq")
    kept = [fresh_query() for _ in range(REGISTRATIONS)]
    for query in kept:
        body = {"query": query, "extensions": persisted(sha256_of(query))}
        assert (await post(limited_server, body))["data"] == {"__typename": "Query"}

    flood = fresh_query()
    refused = await post(
        limited_server, {"query": flood, "extensions": persisted(sha256_of(flood))}
    )
    assert error_code_of(refused) == "RATE_LIMITED"
    assert refused["errors"][0]["extensions"]["retryAfter"] > 0
    for subprotocol in SUBPROTOCOLS:
        async with raw_socket(limited_server, subprotocol, account.token) as socket:
            payload = {"query": flood, "extensions": persisted(sha256_of(flood))}
            assert socket_error_code(await socket_operation(socket, payload)) == "RATE_LIMITED"
    miss = await post(limited_server, {"extensions": persisted(sha256_of(flood))})
    assert error_code_of(miss) == "PERSISTED_QUERY_NOT_FOUND"
    # Hits cost no registration: the kept documents still run by hash.
    for query in kept:
        hit = await post(limited_server, {"extensions": persisted(sha256_of(query))})
        assert hit == {"data": {"__typename": "Query"}}


async def test_get_runs_a_persisted_query_and_never_a_mutation(
    embedded_server: ServerProcess,
) -> None:
    query = fresh_query()
    sha = sha256_of(query)
    miss = await get(embedded_server, {"extensions": persisted(sha)})
    assert error_code_of(miss.json()) == "PERSISTED_QUERY_NOT_FOUND"
    registered = await get(embedded_server, {"query": query, "extensions": persisted(sha)})
    assert registered.json() == {"data": {"__typename": "Query"}}
    hit = await get(embedded_server, {"extensions": persisted(sha)})
    assert (hit.status_code, hit.json()) == (200, {"data": {"__typename": "Query"}})

    # A mutation registered over POST (here refused for its bad password, which runs
    # it) is refused over GET by its hash, and its side effect never happens.
    username = f"apq_{secrets.token_hex(5)}"
    mutation = (
        f'mutation SignUp_{secrets.token_hex(4)} {{ signUp(username: "{username}", '
        'password: "short") { token } }'
    )
    mutation_sha = sha256_of(mutation)
    ran = await post(embedded_server, {"query": mutation, "extensions": persisted(mutation_sha)})
    assert ran["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    over_get = await get(embedded_server, {"extensions": persisted(mutation_sha)})
    assert over_get.status_code in (400, 405), over_get.text
    assert "data" not in over_get.json() or over_get.json()["data"] is None


async def payloads_of(socket: RawSocket, operation_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The next data payload of each operation, in whatever order they come."""
    payloads: dict[str, dict[str, Any]] = {}
    while set(payloads) != operation_ids:
        frame = await socket.frame()
        if frame.get("id") in operation_ids:
            assert frame["type"] in ("next", "data"), frame
            payloads[frame["id"]] = frame["payload"]
    return payloads


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_socket_misses_registers_and_hits_a_subscription(
    embedded_server: ServerProcess, subprotocol: str
) -> None:
    alice = await sign_up(embedded_server, "apq")
    bob = await sign_up(embedded_server, "apq")
    room_id = await direct_room(embedded_server, alice, bob)
    subscription = MESSAGE_ADDED.replace(
        "subscription(", f"subscription Live_{secrets.token_hex(6)}("
    )
    sha = sha256_of(subscription)
    # From seq 0: each operation gets the message whenever it started following.
    variables = {"r": room_id, "after": 0}
    async with raw_socket(embedded_server, subprotocol, alice.token) as socket:
        miss = await socket_operation(
            socket, {"extensions": persisted(sha), "variables": variables}
        )
        assert socket_error_code(miss) == "PERSISTED_QUERY_NOT_FOUND"
        wrong = persisted(sha256_of(subscription + " "))
        refused = await socket_operation(
            socket, {"query": subscription, "extensions": wrong, "variables": variables}
        )
        assert socket_error_code(refused) == "BAD_USER_INPUT"

        registered_before = await metric(embedded_server, REGISTERED)
        await socket.start_operation(
            "text", {"query": subscription, "extensions": persisted(sha), "variables": variables}
        )
        # The registration happens before the operation starts: once counted, the
        # hash alone names the document on any transport.
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            # Polls the server's /metrics: there is no event to await across processes.
            while await metric(embedded_server, REGISTERED) == registered_before:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await socket.start_operation("hash", {"extensions": persisted(sha), "variables": variables})
        sent = await as_user(embedded_server, bob, SEND, r=room_id, t="by hash", c=None)
        for payload in (await payloads_of(socket, {"text", "hash"})).values():
            added = payload["data"]["messageAdded"]
            assert (added["seq"], added["text"]) == (sent["sendMessage"]["seq"], "by hash")


async def test_a_query_over_a_socket_runs_by_its_hash(embedded_server: ServerProcess) -> None:
    """graphql-transport-ws also answers queries (graphql-ws streams subscriptions only)."""
    alice = await sign_up(embedded_server, "apq")
    query = f"query Me_{secrets.token_hex(6)} {{ me {{ id }} }}"
    sha = sha256_of(query)
    async with raw_socket(embedded_server, TRANSPORT_WS, alice.token) as socket:
        miss = await socket_operation(socket, {"extensions": persisted(sha)})
        assert socket_error_code(miss) == "PERSISTED_QUERY_NOT_FOUND"
        registered = await socket_operation(socket, {"query": query, "extensions": persisted(sha)})
        assert registered["payload"] == {"data": {"me": {"id": alice.id}}}
        hit = await socket_operation(socket, {"extensions": persisted(sha)})
        assert hit["payload"] == {"data": {"me": {"id": alice.id}}}
    # Registered over the socket, it runs by hash over HTTP too.
    over_http = await post(embedded_server, {"extensions": persisted(sha)}, alice.token)
    assert over_http == {"data": {"me": {"id": alice.id}}}


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_socket_refuses_an_oversize_or_ill_formed_persisted_query(
    limited_server: ServerProcess, subprotocol: str
) -> None:
    account = await sign_up(limited_server, "apq")
    big = fresh_query(MAX_DOCUMENT_BYTES + 1)
    async with raw_socket(limited_server, subprotocol, account.token) as socket:
        oversize = await socket_operation(
            socket, {"query": big, "extensions": persisted(sha256_of(big))}
        )
        assert socket_error_code(oversize) == "BAD_USER_INPUT"
        ill_formed: list[dict[str, Any]] = [
            {"persistedQuery": {"version": 1}},
            {"persistedQuery": []},
        ]
        for extensions in ill_formed:
            frame = await socket_operation(socket, {"extensions": extensions})
            assert socket_error_code(frame) == "BAD_USER_INPUT"
        # The socket lives on: an ordinary operation is still answered on it (graphql-ws
        # refuses queries, as it always does).
        plain = await socket_operation(socket, {"query": "{ me { id } }"})
        if subprotocol == TRANSPORT_WS:
            assert plain["payload"] == {"data": {"me": {"id": account.id}}}
        else:
            assert socket_error_code(plain) == "BAD_USER_INPUT"


async def test_a_persisted_query_with_ill_typed_variables_is_bad_user_input(
    embedded_server: ServerProcess,
) -> None:
    account = await sign_up(embedded_server, "apq")
    query = f"query Room_{secrets.token_hex(6)}($r: ID!) {{ room(id: $r) {{ id }} }}"
    sha = sha256_of(query)
    body = {"query": query, "extensions": persisted(sha), "variables": {"r": {"not": "an id"}}}
    assert error_code_of(await post(embedded_server, body, account.token)) == "BAD_USER_INPUT"
    # Registered all the same (the text matched its hash); the hash alone with the same
    # variables is refused the same way, and another user's room is not found by it.
    by_hash = {"extensions": persisted(sha), "variables": {"r": ["x"]}}
    assert error_code_of(await post(embedded_server, by_hash, account.token)) == "BAD_USER_INPUT"
    missing = {"extensions": persisted(sha), "variables": {"r": "0" * 24}}
    answer = await post(embedded_server, missing, account.token)
    assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_get_whose_extensions_are_not_json_is_refused(
    embedded_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            embedded_server.http_url,
            params={"extensions": "{persistedQuery"},
            headers={"accept": "*/*"},
        )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")


async def test_with_persisted_queries_off_a_hash_is_not_supported_and_text_runs() -> None:
    server = ServerProcess(f"apq-off-{secrets.token_hex(3)}", {"PLOP_APQ_ENABLED": "false"})
    await server.start()
    try:
        query = fresh_query()
        sha = sha256_of(query)
        for body in (
            {"extensions": persisted(sha)},
            {"query": query, "extensions": persisted(sha)},
        ):
            answer = await post(server, body)
            assert error_code_of(answer) == "PERSISTED_QUERY_NOT_SUPPORTED"
            assert answer["errors"][0]["message"] == "PersistedQueryNotSupported"
        # What Apollo's link sends next: the text alone, which runs.
        assert await post(server, {"query": query}) == {"data": {"__typename": "Query"}}
    finally:
        await server.stop()
