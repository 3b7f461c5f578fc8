"""The documents are ready for a sharded MongoDB (models.shard_keys, docs/scaling.md).

Every unique index of a collection to be sharded starts with its shard key; every
query the server sends on such a collection while users chat names the shard key,
or is one of the scatters the plan accepts; nothing uses a multi-document transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import pytest_asyncio
from beanie import Document, Indexed, PydanticObjectId
from pymongo import ASCENDING, IndexModel

from backends.mongo import open_database
from models import DOCUMENT_MODELS, MessageDoc
from models.shard_keys import (
    ACCEPTED_SCATTERS,
    DROPPED_WHEN_SHARDED,
    SHARD_KEYS,
    UNSHARDED,
    ShardKey,
)
from tests.support.chat import (
    HISTORY,
    MARK_READ,
    MESSAGE_ADDED,
    ROOM,
    ROOMS,
    SEND,
    as_user,
    direct_room,
    group_room,
)
from tests.support.clients import (
    LEGACY_WS,
    TRANSPORT_WS,
    Account,
    call,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.query_recorder import RecordedQuery, RecordingServer, read_record
from tests.support.rich_messages import ADD_REACTION, REMOVE_REACTION
from tests.support.services import RealServices
from tests.support.shard_walk import (
    declared_indexes,
    fields_named,
    misplaced_uniques,
    names_field,
    scatter_shapes,
    untargeted,
)

REPO = Path(__file__).resolve().parents[1]
# Plop's own code: every package the project installs, and its top-level modules.
PRODUCT_CODE = (
    *(
        REPO / name
        for name in (
            "app",
            "auth",
            "backends",
            "bench",
            "cli",
            "client",
            "devtools",
            "models",
            "observability",
            "pubsub",
            "push",
            "resolvers",
            "schema",
            "services",
            "transport",
            "web",
        )
    ),
    REPO / "main.py",
    REPO / "settings.py",
    REPO / "errors.py",
)
TRANSACTION_CALLS = re.compile(r"\b(start_session|with_transaction|start_transaction)\b")

EDIT = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { id text } }"
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { id deleted } }"
REPLY = """
mutation($r: ID!, $t: String!, $to: ID) {
  sendMessage(roomId: $r, text: $t, replyToId: $to) { id seq replyTo { id } }
}
"""
SYNC = """
query($since: String) {
  sync(since: $since) { rooms { room { id lastSeq unreadCount } messages { seq } } nextToken }
}
"""
EVENTS = """
subscription($s: String) {
  events(since: $s) { token payload { __typename ... on MessageAdded { message { seq } } } }
}
"""
MUTE = "mutation($r: ID!) { muteRoom(roomId: $r) { id } }"
FRIENDS = "{ friends { id } }"
SEARCH_MESSAGES = """
query($q: String!, $r: ID) { searchMessages(query: $q, roomId: $r) { edges { node { seq } } } }
"""
REMOVE_MEMBER = "mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }"
LEAVE = "mutation($r: ID!) { leaveRoom(roomId: $r) }"
REMOVE_FRIEND = "mutation($u: ID!) { removeFriend(userId: $u) }"
BLOCK = "mutation($u: ID!) { blockUser(userId: $u) }"
DELETE_ACCOUNT = "mutation($p: String!) { deleteAccount(password: $p) }"
LOG_OUT = "mutation { logOut }"


# --- the plan itself -------------------------------------------------------------


def test_every_collection_is_either_sharded_or_says_why_not() -> None:
    collections = {model.Settings.name for model in DOCUMENT_MODELS}
    planned = set(SHARD_KEYS) | set(UNSHARDED)
    assert collections == planned, (collections - planned, planned - collections)
    assert not set(SHARD_KEYS) & set(UNSHARDED)
    for model in DOCUMENT_MODELS:
        key = SHARD_KEYS.get(model.Settings.name)
        if key is not None:
            stored = {"_id"} | {info.alias or name for name, info in model.model_fields.items()}
            assert key.field in stored, f"{model.__name__} has no field {key.field}"


def test_the_scaling_guide_names_each_collections_shard_key() -> None:
    guide = (REPO / "docs" / "scaling.md").read_text()
    for collection, key in SHARD_KEYS.items():
        row = rf"^\| `{collection}` \| `{re.escape(key.field)}`"
        assert re.search(row, guide, re.MULTILINE), f"docs/scaling.md: no row {collection}"
    for collection in UNSHARDED:
        assert f"| `{collection}` | unsharded |" in guide, f"docs/scaling.md: {collection}"


def test_every_unique_index_of_a_sharded_collection_starts_with_its_shard_key() -> None:
    assert misplaced_uniques(DOCUMENT_MODELS, SHARD_KEYS, DROPPED_WHEN_SHARDED) == []


class _SampleMessageDoc(Document):
    room_id: PydanticObjectId
    sender_id: PydanticObjectId
    label: Annotated[str, Indexed(unique=True)]
    note: str

    class Settings:
        name = "sample_messages"
        indexes = [
            IndexModel(
                [("room_id", ASCENDING), ("note", ASCENDING)], unique=True, name="room_note"
            ),
            IndexModel([("sender_id", ASCENDING), ("note", ASCENDING)], name="sender_note"),
            IndexModel(
                [("sender_id", ASCENDING), ("room_id", ASCENDING)],
                unique=True,
                name="sender_room_unique",
            ),
        ]


def test_the_walk_refuses_a_unique_index_without_the_shard_key() -> None:
    plan = {"sample_messages": ShardKey("room_id", "a sample")}
    problems = misplaced_uniques([_SampleMessageDoc], plan, {})
    # The unique index led by sender_id and the unique Indexed field; neither the
    # unique one led by room_id nor the plain one led by sender_id.
    assert len(problems) == 2, problems
    assert any("sender_room_unique" in problem for problem in problems)
    assert any("label (Indexed)" in problem for problem in problems)
    # Unsharded, the same model passes.
    assert misplaced_uniques([_SampleMessageDoc], {}, {}) == []


def test_an_index_kept_until_sharding_needs_a_unique_one_led_by_the_key_to_replace_it() -> None:
    plan = {"sample_messages": ShardKey("room_id", "a sample")}
    without_label = {("sample_messages", "label (Indexed)"): ("room_note", "label is unique")}
    # room_note starts with room_id but does not hold label: no replacement.
    problems = misplaced_uniques(
        [_SampleMessageDoc],
        plan,
        {**without_label, ("sample_messages", "sender_room_unique"): ("room_note", "x")},
    )
    assert len(problems) == 2, problems
    replaced = {("sample_messages", "sender_room_unique"): ("room_note", "x")}
    assert len(misplaced_uniques([_SampleMessageDoc], plan, replaced)) == 2
    # The messages' own: the idempotency key, unique per room beside it.
    messages = [model for model in DOCUMENT_MODELS if model.Settings.name == "messages"]
    assert misplaced_uniques(messages, SHARD_KEYS, {}) != []
    assert misplaced_uniques(messages, SHARD_KEYS, DROPPED_WHEN_SHARDED) == []


def test_declared_indexes_are_read_from_settings_and_indexed_fields() -> None:
    found = {index.name: index for index in declared_indexes(_SampleMessageDoc)}
    assert found["room_note"].fields == ("room_id", "note") and found["room_note"].unique
    assert not found["sender_note"].unique
    assert found["label (Indexed)"].unique


def test_a_query_names_the_shard_key_only_when_it_pins_every_document() -> None:
    assert names_field({"room_id": 1, "seq": {"$gt": 3}}, "room_id")
    assert names_field({"$and": [{"room_id": {"$in": [1, 2]}}, {"seq": 1}]}, "room_id")
    assert names_field({"$or": [{"room_id": 1, "seq": 2}, {"room_id": 2}]}, "room_id")
    assert not names_field({"$or": [{"room_id": 1}, {"sender_id": 2}]}, "room_id")
    assert not names_field({"sender_id": 1}, "room_id")
    assert fields_named({"$or": [{"owner_id": 1}, {"friend_id": 2}]}) == ("friend_id", "owner_id")
    scatter = RecordedQuery("find", "messages", {"sender_id": 1, "text": "x"})
    assert len(untargeted([scatter], SHARD_KEYS, ACCEPTED_SCATTERS)) == 1
    unsharded = RecordedQuery("find", "users", {"username": "x"})
    assert untargeted([unsharded], SHARD_KEYS, ACCEPTED_SCATTERS) == []


@pytest.mark.parametrize("sharded", [False, True])
async def test_a_sharded_database_is_not_given_the_indexes_only_an_unsharded_one_keeps(
    real_services: RealServices, sharded: bool
) -> None:
    name = f"plop_shards_{secrets.token_hex(4)}"
    async with open_database(
        real_services.mongo_url_for(name), timeout_seconds=10, max_connections=4, sharded=sharded
    ):
        collection = MessageDoc.get_pymongo_collection()
        try:
            names = {index["name"] async for index in await collection.list_indexes()}
        finally:
            await collection.database.client.drop_database(name)
    assert {"room_seq_unique", "room_idempotency_unique"} <= names
    assert ("idempotency_unique" in names) is not sharded


def test_nothing_uses_a_multi_document_transaction() -> None:
    files = [
        path
        for place in PRODUCT_CODE
        for path in ([place] if place.is_file() else sorted(place.rglob("*.py")))
    ]
    assert len(files) > 50
    used = [
        f"{path.relative_to(REPO)}:{number}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TRANSACTION_CALLS.search(line)
    ]
    assert used == []


# --- the queries the server sends ---------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def recording(
    real_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[RecordingServer, Path]]:
    record = tmp_path / "queries.jsonl"
    server = RecordingServer("shard-queries", {**real_env, "PLOP_INSTANCE_ID": "q"}, record)
    await server.start()
    try:
        yield server, record
    finally:
        await server.stop()


async def _chat_as_users_do(server: RecordingServer) -> None:
    """Rooms, sends (a retry too), live delivery on both subprotocols and the account
    stream, paging, catch-up, read markers, reactions, replies, edits, deletes, mutes."""
    alice, bob, carol = [await sign_up(server, prefix) for prefix in ("al", "bo", "ca")]
    group = await group_room(server, alice, [bob, carol])
    direct = await direct_room(server, alice, bob)
    async with (
        ws_session(server, TRANSPORT_WS, bob.token) as modern,
        ws_session(server, LEGACY_WS, carol.token) as legacy,
        subscribed(server, modern, MESSAGE_ADDED, r=group, after=0) as live,
        subscribed(server, legacy, EVENTS, s=None) as account,
    ):
        first = await _send(server, alice, group, "hello", "c-1")
        again = await _send(server, alice, group, "hello", "c-1")  # a retry: one message
        assert again["id"] == first["id"]
        await as_user(server, alice, MUTE, r=group)
        replied = await as_user(server, bob, REPLY, r=group, t="hi", to=first["id"])
        assert replied["sendMessage"]["replyTo"]["id"] == first["id"]
        await _send(server, bob, direct, "psst", "c-2")
        seen = [result["messageAdded"]["seq"] for result in await live.take(2)]
        assert seen == [1, 2]
        events = [await account.next() for _ in range(2)]
        assert [event["events"]["payload"]["message"]["seq"] for event in events] == [1, 2]
    async with (
        ws_session(server, LEGACY_WS, carol.token) as again_legacy,
        subscribed(server, again_legacy, EVENTS, s=events[0]["events"]["token"]) as resumed,
    ):
        # Resumed from the first event's token: the second, caught up from the store.
        replayed = await resumed.next()
        assert replayed["events"]["payload"]["message"]["seq"] == 2
    await as_user(server, bob, ADD_REACTION, m=first["id"], e="👍")
    await as_user(server, bob, REMOVE_REACTION, m=first["id"], e="👍")
    await as_user(server, alice, EDIT, m=first["id"], t="hello!")
    await as_user(server, bob, MARK_READ, r=group, s=2)
    async with http_session(server, carol.token) as session:
        page = (await call(session, HISTORY, r=group, last=1))["messages"]
        older = await call(
            session, HISTORY, r=group, last=5, before=page["pageInfo"]["startCursor"]
        )
        assert [edge["node"]["seq"] for edge in older["messages"]["edges"]] == [1]
        synced = (await call(session, SYNC, since=None))["sync"]
        assert {row["room"]["id"] for row in synced["rooms"]} == {group}
        await call(session, ROOMS, first=10)
        await call(session, ROOM, r=group)
        await call(session, FRIENDS)
    await as_user(server, alice, DELETE, m=first["id"])
    async with http_session(server, carol.token) as session:
        later = (await call(session, SYNC, since=synced["nextToken"]))["sync"]
        assert [row["room"]["id"] for row in later["rooms"]] == [group]


async def _part_as_users_do(server: RecordingServer) -> None:
    """What people do less often: search, remove a member, leave, unfriend, block, end
    a session, delete an account."""
    alice, bob, carol, dave = [await sign_up(server, prefix) for prefix in "abcd"]
    group = await group_room(server, alice, [bob, carol, dave])
    direct = await direct_room(server, dave, carol)
    await _send(server, alice, group, "a word to find", "c-1")
    await _send(server, dave, direct, "another word", "c-2")
    for room in (group, None):
        found = await as_user(server, bob, SEARCH_MESSAGES, q="word", r=room)
        assert [edge["node"]["seq"] for edge in found["searchMessages"]["edges"]] == [1]
    await as_user(server, alice, REMOVE_MEMBER, r=group, u=carol.id)
    assert (await as_user(server, bob, LEAVE, r=group))["leaveRoom"] is True
    await as_user(server, alice, REMOVE_FRIEND, u=bob.id)
    await as_user(server, carol, BLOCK, u=alice.id)
    await as_user(server, bob, LOG_OUT)
    gone = await as_user(server, dave, DELETE_ACCOUNT, p="correct horse battery")
    assert gone["deleteAccount"] is True


async def _send(server: RecordingServer, sender: Account, room: str, text: str, client: str) -> Any:
    return (await as_user(server, sender, SEND, r=room, t=text, c=client))["sendMessage"]


@pytest.mark.timeout(120)
async def test_the_queries_of_a_conversation_name_their_shard_key(
    recording: tuple[RecordingServer, Path],
) -> None:
    server, record = recording
    await _chat_as_users_do(server)
    await _part_as_users_do(server)
    await server.stop()  # every query written
    queries = read_record(record)
    # The record saw each sharded collection asked (the check below has work to do).
    assert set(SHARD_KEYS) <= {query.collection for query in queries}, {
        query.collection for query in queries
    }
    assert untargeted(queries, SHARD_KEYS, ACCEPTED_SCATTERS) == []
    # Every scatter the plan accepts is one the server really sends (the list does not
    # outlive the queries it excuses).
    accepted = {(scatter.collection, scatter.fields) for scatter in ACCEPTED_SCATTERS}
    assert accepted - scatter_shapes(queries, SHARD_KEYS) == set()
