"""The room event log: every stored room change but a new message is logged with its
position before it is made (``services.room_event_log``), one entry per published
event, and published with that position.

Driven as users do (real servers, the gql client); the log is read from the real
services' store and the watermark from their Redis. A refused change logs nothing.
Live delivery (roomActivity, both subprotocols) is checked on the embedded default
too, and the published events' positions on the real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from bson import ObjectId
from gql.transport.exceptions import TransportQueryError
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from models import MessageDoc
from models.time import utc_now
from pubsub import Event, MessageUpdated
from pubsub.kafka import KafkaBroker
from pubsub.memory import MemoryBroker
from pubsub.topics import ROOM_EVENTS, USER_EVENTS
from services.event_positions import EventPositions
from services.locks import Locks
from services.publisher import EventPublisher
from services.relay import MessageRelay
from tests.support.chat import (
    CREATE_GROUP,
    INVITE,
    LEAVE,
    MARK_READ,
    as_user,
    befriend_all,
    direct_room,
    group_room,
    invitations,
    send,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.rich_messages import ADD_REACTION, REMOVE_REACTION
from tests.support.server import ServerProcess
from tests.test_roles import REMOVE, RENAME, SET_ROLE
from tests.test_room_activity import DELETE, EDIT, next_activity

RESPOND_INVITATION = """
mutation($i: ID!, $a: Boolean!) { respondToRoomInvitation(invitationId: $i, accept: $a) { id } }
"""
REACTION_EVENT = """
subscription($r: ID!) {
  roomActivity(roomId: $r) {
    __typename
    ... on ReactionChanged { emoji added user { id } }
    ... on MessageUpdated { message { id text deleted } }
    ... on ReadReceipt { lastReadSeq user { id } }
  }
}
"""
# The servers' budget of room renames (settings.py: update_room_limit).
RENAME_BUDGET = 30
EVENT_WAIT_SECONDS = 20.0


class EventLog:
    """The log as the real services store it, and the positions' watermark."""

    def __init__(self, mongo: AsyncMongoClient[dict[str, Any]], redis: Redis) -> None:
        self._database = mongo.get_default_database()
        self.positions = EventPositions(redis)

    async def of_room(self, room_id: str) -> list[dict[str, Any]]:
        """The room's entries, by position."""
        cursor = self._database["room_events"].find({"room_id": ObjectId(room_id)}).sort("pos", 1)
        return await cursor.to_list()

    async def after(self, room_id: str, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The room's entries logged since ``seen`` was read, each checked: its wire
        body carries its position, and nothing is left in flight at or below it."""
        entries = await self.of_room(room_id)
        assert entries[: len(seen)] == seen, "an earlier entry changed or was taken back"
        new = entries[len(seen) :]
        watermark = await self.positions.watermark()
        for entry in new:
            assert entry["event"]["pos"] == entry["pos"]
            assert entry["pos"] <= watermark, "a logged change is still in flight"
        return new

    async def message(self, message_id: str) -> dict[str, Any]:
        found = await self._database["messages"].find_one({"_id": ObjectId(message_id)})
        assert found is not None
        return found


@pytest_asyncio.fixture(loop_scope="session")
async def event_log(real_env: dict[str, str]) -> AsyncIterator[EventLog]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_env["PLOP_MONGO_URL"])
    redis = Redis.from_url(real_env["PLOP_REDIS_URL"])
    try:
        yield EventLog(mongo, redis)
    finally:
        await redis.aclose()
        await mongo.close()


def kinds(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["event"]["type"] for entry in entries]


def about(entry: dict[str, Any]) -> list[str]:
    return [str(user_id) for user_id in entry["user_ids"]]


def positions(entries: list[dict[str, Any]]) -> list[int]:
    found = [entry["pos"] for entry in entries]
    assert found == sorted(set(found)), f"positions not increasing: {found}"
    return found


async def test_edits_deletes_and_reactions_are_logged_at_the_messages_update_pos(
    server_a: ServerProcess, event_log: EventLog
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    message = await send(server_a, alice, room_id, "frist")
    seen = await event_log.of_room(room_id)

    await as_user(server_a, alice, EDIT, m=message["id"], t="first")
    (edit,) = await event_log.after(room_id, seen)
    stored = await event_log.message(message["id"])
    assert edit["event"]["type"] == "message.updated" and edit["user_ids"] == []
    assert edit["event"]["message"]["text"] == "first"
    assert edit["event"]["message"]["id"] == message["id"]
    assert stored["update_pos"] == edit["pos"] and stored["pos"] < edit["pos"]
    seen.append(edit)

    async with http_session(server_a, bob.token) as session:
        # Added twice and removed twice: only the first of each changes anything.
        for query in (ADD_REACTION, ADD_REACTION, REMOVE_REACTION, REMOVE_REACTION):
            await call(session, query, m=message["id"], e="👍")
    added, removed = await event_log.after(room_id, seen)
    for entry, was_added in ((added, True), (removed, False)):
        event = entry["event"]
        assert event["type"] == "reaction.changed" and event["added"] is was_added
        assert (event["user_id"], event["message_id"], event["emoji"]) == (
            bob.id,
            message["id"],
            "👍",
        )
    seen += [added, removed]

    await as_user(server_a, alice, DELETE, m=message["id"])
    await as_user(server_a, alice, DELETE, m=message["id"])  # again: nothing changes
    (delete,) = await event_log.after(room_id, seen)
    assert delete["event"]["message"]["deleted"] is True
    assert delete["event"]["message"]["text"] == ""
    assert (await event_log.message(message["id"]))["update_pos"] == delete["pos"]
    positions([*seen, delete])


async def test_a_read_marker_that_moves_is_logged_one_that_does_not_is_not(
    server_a: ServerProcess, event_log: EventLog
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    for text in ("one", "two"):
        await send(server_a, alice, room_id, text)
    seen = await event_log.of_room(room_id)
    for seq in (1, 1, 0, 2, 9):  # 9 is cut to the newest message: 2, no move
        await as_user(server_a, bob, MARK_READ, r=room_id, s=seq)
    receipts = await event_log.after(room_id, seen)
    assert kinds(receipts) == ["read.receipt", "read.receipt"]
    assert [entry["event"]["last_read_seq"] for entry in receipts] == [1, 2]
    assert {entry["event"]["user_id"] for entry in receipts} == {bob.id}
    positions(receipts)


async def test_membership_changes_log_one_entry_per_event_about_who_they_concern(
    server_a: ServerProcess, event_log: EventLog
) -> None:
    alice, bob, carol, dave, erin = [await sign_up(server_a) for _ in range(5)]
    await befriend_all(server_a, alice, [bob, dave])
    created = await as_user(server_a, alice, CREATE_GROUP, t="plans", m=[bob.id, carol.id])
    room_id = created["createGroupRoom"]["id"]

    log = await event_log.after(room_id, [])
    joined, alice_added, bob_added, carol_invited = log
    assert joined["event"]["type"] == "members.changed" and joined["user_ids"] == []
    assert joined["event"]["added"] == [alice.id, bob.id] and joined["event"]["removed"] == []
    for entry, user in ((alice_added, alice), (bob_added, bob)):
        assert entry["event"] == {
            "v": 1,
            "type": "room.added",
            "user_id": user.id,
            "room_id": room_id,
            "pos": entry["pos"],
        }
        assert about(entry) == [user.id]
    (invitation,) = await invitations(server_a, carol)
    assert carol_invited["event"] == {
        "v": 1,
        "type": "invitation.received",
        "user_id": carol.id,
        "room_id": room_id,
        "invitation_id": invitation["id"],
        "pos": carol_invited["pos"],
    }
    assert about(carol_invited) == [carol.id]

    await as_user(server_a, carol, RESPOND_INVITATION, i=invitation["id"], a=True)
    await as_user(server_a, alice, INVITE, r=room_id, u=[dave.id, erin.id])  # a friend, not
    await as_user(server_a, alice, RENAME, r=room_id, t="new plans")
    await as_user(server_a, alice, SET_ROLE, r=room_id, u=dave.id, role="ADMIN")
    await as_user(server_a, alice, SET_ROLE, r=room_id, u=dave.id, role="ADMIN")  # no change
    await as_user(server_a, bob, LEAVE, r=room_id)
    await as_user(server_a, alice, REMOVE, r=room_id, u=carol.id)
    later = await event_log.after(room_id, log)
    assert kinds(later) == [
        "members.changed",  # carol accepted
        "room.added",
        "members.changed",  # dave, a friend, is put in
        "room.added",
        "invitation.received",  # erin is invited
        "members.changed",  # the rename
        "members.changed",  # dave made an admin (once: the second changes nothing)
        "members.changed",  # bob left
        "members.changed",  # carol was removed
    ]
    (
        accepted,
        carol_added,
        dave_joined,
        dave_added,
        erin_invited,
        renamed,
        promoted,
        left,
        removed,
    ) = later
    assert accepted["event"]["added"] == [carol.id] and about(carol_added) == [carol.id]
    assert dave_joined["event"]["added"] == [dave.id] and about(dave_added) == [dave.id]
    assert about(erin_invited) == [erin.id] and erin_invited["event"]["user_id"] == erin.id
    (erin_invitation,) = await invitations(server_a, erin)
    assert erin_invited["event"]["invitation_id"] == erin_invitation["id"]
    for changed in (renamed, promoted):
        assert (changed["event"]["added"], changed["event"]["removed"], about(changed)) == (
            [],
            [],
            [],
        )
    assert (left["event"]["removed"], about(left)) == ([bob.id], [bob.id])
    assert (removed["event"]["removed"], about(removed)) == ([carol.id], [carol.id])
    positions([*log, *later])

    # Invited again while the invitation is pending: nothing changes, nothing is logged.
    await as_user(server_a, alice, INVITE, r=room_id, u=[erin.id])
    assert await event_log.after(room_id, [*log, *later]) == []


async def test_a_direct_room_logs_its_members_joining(
    server_a: ServerProcess, event_log: EventLog
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    assert await direct_room(server_a, bob, alice) == room_id  # opened again: no change
    joined, alice_added, bob_added = await event_log.after(room_id, [])
    assert joined["event"]["added"] == [alice.id, bob.id]
    assert (about(alice_added), about(bob_added)) == ([alice.id], [bob.id])


async def test_refused_changes_log_nothing(server_a: ServerProcess, event_log: EventLog) -> None:
    alice, bob, mallory = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, [bob])
    message = await send(server_a, alice, room_id, "mine")
    seen = await event_log.of_room(room_id)
    async with http_session(server_a, mallory.token) as outsider:
        assert await error_code(outsider, EDIT, m=message["id"], t="theirs") == "FORBIDDEN"
        assert await error_code(outsider, DELETE, m=message["id"]) == "FORBIDDEN"
        assert await error_code(outsider, ADD_REACTION, m=message["id"], e="👍") == "FORBIDDEN"
        assert await error_code(outsider, MARK_READ, r=room_id, s=1) == "FORBIDDEN"
        assert await error_code(outsider, RENAME, r=room_id, t="mine now") == "FORBIDDEN"
        assert await error_code(outsider, REMOVE, r=room_id, u=bob.id) == "FORBIDDEN"
    async with http_session(server_a, bob.token) as member:
        # Another member's message, and a rename a member may not make.
        assert await error_code(member, EDIT, m=message["id"], t="theirs") == "FORBIDDEN"
        assert await error_code(member, RENAME, r=room_id, t="mine now") == "FORBIDDEN"
    assert await event_log.after(room_id, seen) == []

    # A flood of renames: each within the budget is logged, those past it are not.
    renamed = refused = 0
    async with http_session(server_a, alice.token) as owner:
        while refused < 3:
            assert renamed <= 2 * RENAME_BUDGET, "the budget never ran out"
            try:
                await call(owner, RENAME, r=room_id, t=f"name {renamed}")
                renamed += 1
            except TransportQueryError as exc:
                assert exc.errors and exc.errors[0]["extensions"]["code"] == "RATE_LIMITED"
                refused += 1
    renames = await event_log.after(room_id, seen)
    assert renamed >= RENAME_BUDGET
    assert len(renames) == renamed and set(kinds(renames)) == {"members.changed"}
    positions(renames)


class Published:
    """Events taken from the broker as they come."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Event()

    def add(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    async def with_positions(self, wanted: list[int]) -> dict[int, Event]:
        """The events carrying the wanted positions, once all have come."""
        async with asyncio.timeout(EVENT_WAIT_SECONDS):
            while True:
                self._arrived.clear()
                found = {
                    pos: event for event in self.events if (pos := getattr(event, "pos", None))
                }
                if set(wanted) <= set(found):
                    return {pos: found[pos] for pos in wanted}
                await self._arrived.wait()


@asynccontextmanager
async def published(
    real_env: dict[str, str], room_id: str, user_ids: set[str]
) -> AsyncIterator[Published]:
    """The events published on the real broker for the room and the users from now on."""
    prefix = real_env["PLOP_TOPIC_PREFIX"]
    broker = KafkaBroker(real_env["PLOP_BROKER_URL"], "event-log-test")
    await broker.start({})
    taken = Published()

    async def collect(topic: str, keys: set[str], ready: asyncio.Event) -> None:
        async with broker.subscribe(f"{prefix}.{topic}", keys.__contains__) as events:
            ready.set()
            async for event in events:
                taken.add(event)

    collectors: list[asyncio.Task[None]] = []
    try:
        for topic, keys in ((ROOM_EVENTS, {room_id}), (USER_EVENTS, user_ids)):
            ready = asyncio.Event()
            collectors.append(asyncio.create_task(collect(topic, keys, ready)))
            await asyncio.wait_for(ready.wait(), EVENT_WAIT_SECONDS)
        yield taken
    finally:
        for task in collectors:
            task.cancel()
        await asyncio.gather(*collectors, return_exceptions=True)
        await broker.close()


async def test_published_events_carry_their_logged_positions(
    server_a: ServerProcess, event_log: EventLog, real_env: dict[str, str]
) -> None:
    alice, bob, carol = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, [bob])
    message = await send(server_a, alice, room_id, "before")
    seen = await event_log.of_room(room_id)
    async with published(real_env, room_id, {bob.id, carol.id}) as events:
        await as_user(server_a, alice, EDIT, m=message["id"], t="after")
        await as_user(server_a, bob, ADD_REACTION, m=message["id"], e="🎉")
        await as_user(server_a, bob, MARK_READ, r=room_id, s=1)
        await as_user(server_a, alice, INVITE, r=room_id, u=[carol.id])
        await as_user(server_a, bob, LEAVE, r=room_id)
        logged = await event_log.after(room_id, seen)
        by_pos = await events.with_positions(positions(logged))
    assert [type(event).type for event in by_pos.values()] == kinds(logged)
    edit = by_pos[logged[0]["pos"]]
    assert isinstance(edit, MessageUpdated) and edit.message.text == "after"
    assert (await event_log.message(message["id"]))["update_pos"] == edit.pos


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_logged_changes_reach_room_activity_as_before(
    any_server: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    message = await send(any_server, alice, room_id, "hello")
    async with (
        ws_session(any_server, subprotocol, bob.token) as session,
        subscribed(any_server, session, REACTION_EVENT, r=room_id) as live,
    ):
        await as_user(any_server, alice, EDIT, m=message["id"], t="hello again")
        await as_user(any_server, alice, ADD_REACTION, m=message["id"], e="👋")
        await as_user(any_server, alice, REMOVE_REACTION, m=message["id"], e="👋")
        await as_user(any_server, alice, MARK_READ, r=room_id, s=1)
        await as_user(any_server, alice, DELETE, m=message["id"])
        got = [await next_activity(live) for _ in range(5)]
    assert got == [
        {
            "__typename": "MessageUpdated",
            "message": {"id": message["id"], "text": "hello again", "deleted": False},
        },
        {"__typename": "ReactionChanged", "emoji": "👋", "added": True, "user": {"id": alice.id}},
        {"__typename": "ReactionChanged", "emoji": "👋", "added": False, "user": {"id": alice.id}},
        {"__typename": "ReadReceipt", "lastReadSeq": 1, "user": {"id": alice.id}},
        {
            "__typename": "MessageUpdated",
            "message": {"id": message["id"], "text": "", "deleted": True},
        },
    ]


class RecordingPublisher(EventPublisher):
    """Keeps what is published, and reports every publish as failed (so the relay
    leaves the update for its next pass and writes nothing)."""

    def __init__(self) -> None:
        super().__init__(MemoryBroker(), {}, 1.0)
        self.sent: list[Event] = []

    async def publish(self, event: Event) -> bool:
        self.sent.append(event)
        return False


@pytest.mark.parametrize("update_pos", [42, None])
async def test_a_republished_update_carries_its_stored_position(update_pos: int | None) -> None:
    publisher = RecordingPublisher()
    relay = MessageRelay(
        publisher,
        Locks(Redis()),
        grace_seconds=1.0,
        interval_seconds=0.5,
        idle_interval_seconds=30.0,
    )
    message = MessageDoc.model_construct(
        id=ObjectId(),
        room_id=ObjectId(),
        seq=3,
        sender_id=ObjectId(),
        text="edited",
        client_id=None,
        created_at=utc_now(),
        edited_at=None,
        deleted=False,
        reply_to_id=None,
        mention_ids=[],
        pos=7,
        update_pos=update_pos,
        update_published=False,
    )
    await relay.publish_update(message, None)
    (event,) = publisher.sent
    assert isinstance(event, MessageUpdated)
    assert event.pos == update_pos and event.message.pos == 7
    assert message.update_published is False  # left for the next pass
