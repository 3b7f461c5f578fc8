"""searchMessages: every word of the query, case- and accent-insensitive, CJK by
bigrams, newest first with Relay cursors, in one room or every room of the viewer;
deleted messages never match, edits are found by their new text; a room the viewer
is not in is FORBIDDEN. On the embedded default and on FerretDB alike, which must
find the same messages; messages stored before search are found once the start-up
backfill gave them their tokens.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio
from bson import ObjectId
from pymongo import AsyncMongoClient

from services.search_windows import search_fields
from tests.support.chat import LEAVE, as_user, direct_room, group_room, send
from tests.support.clients import (
    TRANSPORT_WS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    ws_session,
)
from tests.support.server import ServerProcess

SEARCH = """
query($q: String!, $r: ID, $first: Int, $after: String) {
  searchMessages(query: $q, roomId: $r, first: $first, after: $after) {
    edges { cursor node { id roomId seq text deleted editedAt sender { username } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
EDIT = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { id text } }"
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { id deleted } }"
# The documented longest query (PLOP_MAX_SEARCH_QUERY_CHARS).
MAX_QUERY_CHARS = 200
FLOOD_LIMIT = 5
BACKFILL_WITHIN_SECONDS = 60.0


def fullwidth(text: str) -> str:
    """ASCII letters as their full-width forms, which NFKC folds back."""
    return "".join(chr(ord(char) + 0xFEE0) for char in text)


def marker() -> str:
    """A word no other test's message holds, so that results are exactly known."""
    return f"w{secrets.token_hex(5)}"


async def search(
    server: ServerProcess, viewer: Account, query: str, room_id: str | None = None, **paging: Any
) -> dict[str, Any]:
    found: dict[str, Any] = (await as_user(server, viewer, SEARCH, q=query, r=room_id, **paging))[
        "searchMessages"
    ]
    return found


async def texts(
    server: ServerProcess, viewer: Account, query: str, room_id: str | None = None
) -> list[str]:
    page = await search(server, viewer, query, room_id, first=100)
    return [edge["node"]["text"] for edge in page["edges"]]


async def every_page(
    server: ServerProcess, viewer: Account, query: str, room_id: str | None, size: int
) -> list[dict[str, Any]]:
    """Every result, page after page of ``size``; checks each page's flags."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = await search(server, viewer, query, room_id, first=size, after=after)
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert len(page["edges"]) <= size
        found += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        assert len(page["edges"]) == size
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]


async def test_every_word_case_and_accent_insensitive(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    word = marker()
    both = f"Crème Brûlée at the CAFÉ {word}"
    await send(any_server, alice, room_id, both)
    await send(any_server, bob, room_id, f"creme only {word}")
    await send(any_server, alice, room_id, f"BRULEE only {word}")
    await send(any_server, alice, room_id, "creme brulee without the marker")
    await send(any_server, bob, room_id, f"{fullwidth('FULLWIDTH')} ﬁne straße {word}")
    assert await texts(any_server, bob, f"creme BRULEE {word}", room_id) == [both]
    assert await texts(any_server, bob, f"CRÈME {word.upper()}", room_id) == [
        f"creme only {word}",
        both,
    ]
    assert await texts(any_server, alice, f"cafe {word}") == [both]
    assert await texts(any_server, alice, f"fullwidth FINE STRASSE {word}") == [
        f"{fullwidth('FULLWIDTH')} ﬁne straße {word}"
    ]
    # Words, not parts of words; and every word: one missing word finds nothing.
    assert await texts(any_server, alice, f"cre {word}") == []
    assert await texts(any_server, alice, f"creme brulee custard {word}") == []


async def test_cjk_text_is_found_by_character_bigrams(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    word = marker()
    tokyo = f"東京都に行きます {word}"
    kyoto = f"京都へ {word}"
    korean = f"한국어를 공부해요 {word}"
    for text in (tokyo, kyoto, korean):
        await send(any_server, alice, room_id, text)
    assert await texts(any_server, bob, f"東京 {word}") == [tokyo]
    assert await texts(any_server, bob, f"京都 {word}") == [kyoto, tokyo]
    assert await texts(any_server, bob, f"京 {word}") == [kyoto, tokyo]
    assert await texts(any_server, bob, f"行きます {word}") == [tokyo]
    assert await texts(any_server, bob, f"東都 {word}") == []  # not a bigram of either
    assert await texts(any_server, bob, f"한국어 {word}") == [korean]


async def test_paging_newest_first_without_repeats_or_gaps(any_server: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    first_room = await direct_room(any_server, alice, bob)
    second_room = await direct_room(any_server, alice, carol)
    word = marker()
    sent: list[dict[str, Any]] = []
    for index in range(9):
        room_id = first_room if index % 3 else second_room
        sent.append(await send(any_server, alice, room_id, f"{word} number {index}"))
        await send(any_server, alice, room_id, f"no match {index}")
    newest_first = [message["id"] for message in reversed(sent)]
    for size in (1, 4, 9, 100):
        found = await every_page(any_server, alice, word, None, size)
        assert [message["id"] for message in found] == newest_first
    in_first = [message["id"] for message in reversed(sent) if message["roomId"] == first_room]
    for size in (2, 5):
        found = await every_page(any_server, alice, f"number {word}", first_room, size)
        assert [message["id"] for message in found] == in_first
        assert [message["seq"] for message in found] == sorted(
            (message["seq"] for message in found), reverse=True
        )
    # A message sent after a page was read shows on a first page, never on a later one.
    page = await search(any_server, alice, word, first=3)
    newer = await send(any_server, alice, first_room, f"{word} newer")
    from_the_start = await every_page(any_server, alice, word, None, 3)
    assert from_the_start[0]["id"] == newer["id"]
    later = await search(any_server, alice, word, first=100, after=page["pageInfo"]["endCursor"])
    assert [edge["node"]["id"] for edge in later["edges"]] == newest_first[3:]
    empty = await search(any_server, alice, word, first=0)
    assert empty["edges"] == [] and empty["pageInfo"]["hasNextPage"] is True


async def test_deleted_never_match_and_edits_match_their_new_text(
    any_server: ServerProcess,
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    word = marker()
    gone = await send(any_server, alice, room_id, f"secret plan {word}")
    edited = await send(any_server, alice, room_id, f"apple pie {word}")
    await send(any_server, bob, room_id, f"apple juice {word}")
    assert len(await texts(any_server, bob, f"{word}")) == 3
    await as_user(any_server, alice, DELETE, m=gone["id"])
    await as_user(any_server, alice, EDIT, m=edited["id"], t=f"banana bread {word}")
    assert await texts(any_server, bob, f"secret {word}") == []
    assert await texts(any_server, bob, f"plan {word}", room_id) == []
    assert await texts(any_server, bob, f"apple {word}") == [f"apple juice {word}"]
    assert await texts(any_server, bob, f"pie {word}") == []
    found = (await search(any_server, bob, f"banana {word}", room_id))["edges"]
    assert [(edge["node"]["id"], edge["node"]["editedAt"] is not None) for edge in found] == [
        (edited["id"], True)
    ]
    assert await texts(any_server, bob, word) == [f"apple juice {word}", f"banana bread {word}"]


async def test_only_the_viewers_rooms(any_server: ServerProcess) -> None:
    alice, bob, carol, dave = [await sign_up(any_server) for _ in range(4)]
    direct = await direct_room(any_server, alice, bob)
    group = await group_room(any_server, alice, [carol, dave])
    word = marker()
    await send(any_server, alice, direct, f"to bob {word}")
    await send(any_server, alice, group, f"to the group {word}")
    assert await texts(any_server, alice, word) == [f"to the group {word}", f"to bob {word}"]
    assert await texts(any_server, bob, word) == [f"to bob {word}"]
    assert await texts(any_server, carol, word) == [f"to the group {word}"]
    async with http_session(any_server, carol.token) as session:
        assert await error_code(session, SEARCH, q=word, r=direct) == "FORBIDDEN"
    await as_user(any_server, dave, LEAVE, r=group)
    assert await texts(any_server, dave, word) == []  # a room left is no longer searched
    async with http_session(any_server, dave.token) as session:
        assert await error_code(session, SEARCH, q=word, r=group) == "FORBIDDEN"
        assert await error_code(session, SEARCH, q=word, r=str(ObjectId())) == "NOT_FOUND"
        assert await error_code(session, SEARCH, q=word, r="not-an-id") == "BAD_USER_INPUT"
    async with http_session(any_server) as anonymous:
        assert await error_code(anonymous, SEARCH, q=word) == "UNAUTHENTICATED"


async def test_refusals_are_bad_user_input(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    other_room = await direct_room(any_server, alice, await sign_up(any_server))
    word = marker()
    for index in range(3):
        await send(any_server, alice, room_id, f"{word} {index}")
    longest = f"{word} " + "x" * (MAX_QUERY_CHARS - len(word) - 1)
    assert await texts(any_server, alice, longest) == []
    in_room = await search(any_server, alice, word, room_id, first=1)
    async with http_session(any_server, alice.token) as session:
        for query in ("", "   ", "?! … -- __", longest + "x"):
            assert await error_code(session, SEARCH, q=query) == "BAD_USER_INPUT", query
        for first in (-1, 101):
            assert await error_code(session, SEARCH, q=word, first=first) == "BAD_USER_INPUT"
        for cursor in (
            "nope",
            "x" * 300,
            "bXNnOjE",  # a history cursor
            "Zm91bmQ6MTp4",  # a time, then no id
            # a time past the calendar's end
            "Zm91bmQ6OTk5OTk5OTk5OTk5OTk5OTk5OjZiMTY1Y2ZjMzk5M2EwNWQ3ZmVhZmU1Zg",
        ):
            for room in (room_id, None):
                assert await error_code(session, SEARCH, q=word, r=room, after=cursor) == (
                    "BAD_USER_INPUT"
                )
        # Ill-typed variables.
        for variables in (
            {"q": 5},
            {"q": None},
            {"q": word, "first": "ten"},
            {"q": word, "r": 7},
            {"q": ["a"]},
        ):
            assert await error_code(session, SEARCH, **variables) == "BAD_USER_INPUT", variables
    # A cursor is a place in time: in another room it finds what is older there.
    page = await search(any_server, alice, word, other_room, after=in_room["pageInfo"]["endCursor"])
    assert page["edges"] == []


async def test_search_over_websocket(server_a: ServerProcess) -> None:
    """On graphql-transport-ws, which carries queries (the legacy graphql-ws carries
    subscriptions only)."""
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    word = marker()
    await send(server_a, alice, room_id, f"over the socket {word}")
    async with ws_session(server_a, TRANSPORT_WS, bob.token) as session:
        found = (await call(session, SEARCH, q=f"SOCKET {word}", r=None))["searchMessages"]
        assert [edge["node"]["text"] for edge in found["edges"]] == [f"over the socket {word}"]
        assert await error_code(session, SEARCH, q="") == "BAD_USER_INPUT"


async def fill_conversation(server: ServerProcess, word: str) -> tuple[Account, str]:
    """The same conversation on a server: two people, two rooms, edits and a delete."""
    alice, bob, carol = [await sign_up(server) for _ in range(3)]
    room_id = await direct_room(server, alice, bob)
    group = await group_room(server, alice, [bob, carol])
    lines = [
        (room_id, alice, f"Où est la gare {word}"),
        (room_id, bob, f"la GARE est là {word}"),
        (group, carol, f"東京駅 {word} 北口"),
        (group, alice, f"naïve café {word}"),
        (room_id, alice, f"nothing to find {word} here"),
    ]
    sent = [await send(server, sender, room, text) for room, sender, text in lines]
    await as_user(server, bob, EDIT, m=sent[1]["id"], t=f"la station est là {word}")
    await as_user(server, alice, DELETE, m=sent[4]["id"])
    return bob, room_id


async def test_both_backends_find_the_same_messages(
    server_a: ServerProcess, embedded_server: ServerProcess
) -> None:
    word = marker()
    queries = ["gare", "LA", "station", "東京", "京駅 北口", "NAIVE Cafe", "find", "ou est"]
    results: list[list[tuple[str, int, str]]] = []
    for server in (server_a, embedded_server):
        bob, room_id = await fill_conversation(server, word)
        found: list[tuple[str, int, str]] = []
        for query in queries:
            for room in (None, room_id):
                page = await search(server, bob, f"{query} {word}", room, first=100)
                found += [
                    (query, edge["node"]["seq"], edge["node"]["text"]) for edge in page["edges"]
                ]
        results.append(found)
    assert results[0] == results[1]
    assert ("gare", 1, f"Où est la gare {word}") in results[0]
    assert not any(text.startswith("la GARE") for _, _, text in results[0])


@pytest_asyncio.fixture(loop_scope="session")
async def store(real_env: dict[str, str]) -> AsyncIterator[Any]:
    """The run's database on the real server, as an operator would reach it."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(real_env["PLOP_MONGO_URL"], tz_aware=True)
    try:
        yield client.get_default_database()
    finally:
        await client.close()


async def test_messages_stored_before_search_are_found_after_a_restart(
    server_a: ServerProcess, real_env: dict[str, str], store: Any
) -> None:
    """Messages without tokens (as stored before search) are given theirs by the
    backfill of the next instance to start; a flood of searches is RATE_LIMITED."""
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    word = marker()
    old = [await send(server_a, alice, room_id, f"old message {index} {word}") for index in (1, 2)]
    gone = await send(server_a, alice, room_id, f"old deleted {word}")
    await as_user(server_a, alice, DELETE, m=gone["id"])
    erased = await store.messages.update_many(
        {"room_id": ObjectId(room_id)}, {"$unset": {"search_tokens": "", "search_keys": ""}}
    )
    assert erased.modified_count == 3
    assert await texts(server_a, bob, word) == []  # not found without their tokens
    restarted = ServerProcess(
        f"search-backfill-{word}",
        {**real_env, "PLOP_SEARCH_MESSAGES_LIMIT": str(FLOOD_LIMIT)},
    )
    await restarted.start()
    try:
        async with asyncio.timeout(BACKFILL_WITHIN_SECONDS):
            # Another process's start-up pass: nothing to await but its log line.
            while not restarted.log_count("message search backfill done"):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        assert await texts(restarted, bob, f"OLD {word}") == [
            old[1]["text"],
            old[0]["text"],
        ]
        async with http_session(restarted, alice.token) as session:
            codes = [
                await error_code(session, SEARCH, q="")  # refused input spends too
                for _ in range(FLOOD_LIMIT)
            ]
            assert codes == ["BAD_USER_INPUT"] * FLOOD_LIMIT
            assert await error_code(session, SEARCH, q=word) == "RATE_LIMITED"
        assert await texts(restarted, bob, f"deleted {word}") == []  # bob's budget is his own
    finally:
        await restarted.stop()


# Ages of messages, newest first: within the newest windows of both sizes, across
# their edges, and older than the widest.
AGES = [
    timedelta(minutes=1),
    timedelta(hours=3),
    timedelta(hours=7),
    timedelta(days=2),
    timedelta(days=20),
    timedelta(days=40),
    timedelta(days=400),
]


async def test_paging_across_time_windows(server_a: ServerProcess, store: Any) -> None:
    """Messages sent over months are found newest first, page after page, however the
    pages fall on the time windows a search walks (services/search_windows.py)."""
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    other_room = await direct_room(server_a, alice, await sign_up(server_a))
    word = marker()
    sent = [
        await send(server_a, alice, room_id if index % 2 else other_room, f"{word} aged {index}")
        for index in range(len(AGES))
    ]
    now = datetime.now(UTC)
    # Sent long ago, as far as the store can tell: the time and the windows it implies.
    for message, age in zip(sent, AGES, strict=True):
        sent_at = now - age
        moved = await store.messages.update_one(
            {"_id": ObjectId(message["id"])},
            {"$set": {"created_at": sent_at, **search_fields(message["text"], sent_at)}},
        )
        assert moved.modified_count == 1
    newest_first = [message["id"] for message in sent]
    for size in (1, 2, 3, 100):
        found = await every_page(server_a, alice, f"AGED {word}", None, size)
        assert [message["id"] for message in found] == newest_first, size
    in_room = [message["id"] for message in sent if message["roomId"] == room_id]
    for size in (1, 2):
        found = await every_page(server_a, bob, word, room_id, size)
        assert [message["id"] for message in found] == in_room, size
