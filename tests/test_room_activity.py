"""Room activity: edits, deletes, typing, read receipts and membership on roomActivity.

Run against the embedded default and the real services (two instances, A and B,
over Kafka), on both WebSocket subprotocols.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError

from schema.root import build_schema
from tests.support.chat import (
    HISTORY,
    INVITE,
    LEAVE,
    MARK_READ,
    MESSAGE_ADDED,
    MESSAGE_FIELDS,
    ROOM,
    ROOM_UPDATED,
    as_user,
    befriend_all,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Account,
    Subscription,
    call,
    error_code,
    http_session,
    metric,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.kafka_outage import (
    SHARED_OUTAGE_TEST_SECONDS,
    KafkaOutage,
    OutageServers,
    SharedOutage,
)
from tests.support.server import ServerProcess
from transport.sharing import _analyse

UNKNOWN_ID = "0123456789abcdef01234567"
EDIT = f"""
mutation($m: ID!, $t: String!) {{ editMessage(messageId: $m, text: $t) {{ {MESSAGE_FIELDS} }} }}
"""
DELETE = f"mutation($m: ID!) {{ deleteMessage(messageId: $m) {{ {MESSAGE_FIELDS} }} }}"
SET_TYPING = "mutation($r: ID!, $t: Boolean!) { setTyping(roomId: $r, typing: $t) }"
ROOM_ACTIVITY = f"""
subscription($r: ID!) {{
  roomActivity(roomId: $r) {{
    __typename
    ... on TypingEvent {{ roomId typing user {{ id username }} }}
    ... on ReadReceipt {{ roomId lastReadSeq user {{ id username }} }}
    ... on MessageUpdated {{ message {{ {MESSAGE_FIELDS} }} }}
    ... on MembersChanged {{ room {{ id members {{ id }} }} }}
  }}
}}
"""
# No field below the root reads the viewer: every member's subscription shares one rendering.
SHARED_ACTIVITY = """
subscription($r: ID!) {
  roomActivity(roomId: $r) {
    __typename
    ... on TypingEvent { typing user { id username } }
    ... on ReadReceipt { lastReadSeq user { id } }
    ... on MessageUpdated { message { seq text editedAt } }
  }
}
"""
RENDERINGS = "plop_feed_renderings_total"
# Typing expires after 6 s (the default); the false must arrive within 7 s.
TYPING_EXPIRY_SECONDS = 6.0
TYPING_EXPIRED_WITHIN_SECONDS = 7.0
REBROADCAST_SECONDS = 3.0


def activity(result: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = result["roomActivity"]
    return event


async def next_activity(live: Subscription, within: float = 20.0) -> dict[str, Any]:
    """The next event but membership changes: the room's own creation is published
    before a test subscribes, and over Kafka it may still be consumed after."""
    async with asyncio.timeout(within):
        while (event := activity(await live.next(within)))["__typename"] == "MembersChanged":
            pass
    return event


async def members_now(live: Subscription, *members: Account) -> dict[str, Any]:
    """The next MembersChanged whose room has exactly these members; any earlier
    MembersChanged is the creation's, consumed late (see next_activity)."""
    wanted = {member.id for member in members}
    async with asyncio.timeout(20.0):
        while True:
            event = activity(await live.next())
            assert event["__typename"] == "MembersChanged", f"unexpected {event!r}"
            if {member["id"] for member in event["room"]["members"]} == wanted:
                return event


async def mark_read(server: ServerProcess, account: Account, room_id: str, seq: int) -> None:
    await as_user(server, account, MARK_READ, r=room_id, s=seq)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_edit_and_delete_keep_the_seq_and_show_everywhere(
    any_server: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    first = await send(any_server, alice, room_id, "frist", "c-1")
    second = await send(any_server, alice, room_id, "second")
    async with ws_session(any_server, subprotocol, bob.token) as session:
        async with subscribed(any_server, session, ROOM_ACTIVITY, r=room_id) as live:
            edited = (await as_user(any_server, alice, EDIT, m=first["id"], t="first"))[
                "editMessage"
            ]
            assert edited["text"] == "first" and edited["editedAt"] is not None
            for kept in ("id", "seq", "clientId", "createdAt", "sender"):
                assert edited[kept] == first[kept]
            assert (await next_activity(live))["message"] == edited
            deleted = (await as_user(any_server, alice, DELETE, m=second["id"]))["deleteMessage"]
            assert deleted["deleted"] is True and deleted["text"] == ""
            assert deleted["seq"] == second["seq"]
            assert (await next_activity(live))["message"] == deleted
            again = (await as_user(any_server, alice, DELETE, m=second["id"]))["deleteMessage"]
            assert again == deleted
            # Deleting again changes nothing and publishes nothing: the next event is later.
            await mark_read(any_server, bob, room_id, 2)
            assert (await next_activity(live))["__typename"] == "ReadReceipt"
            live.assert_idle()
        replay = Subscription(session, MESSAGE_ADDED, {"r": room_id, "after": 0})
        try:
            replayed = [result["messageAdded"] for result in await replay.take(2)]
        finally:
            await replay.cancel()
    assert [(m["seq"], m["text"], m["deleted"]) for m in replayed] == [
        (1, "first", False),
        (2, "", True),
    ]
    history = (await as_user(any_server, bob, HISTORY, r=room_id))["messages"]["edges"]
    assert [edge["node"] for edge in history] == [edited, deleted]
    room = (await as_user(any_server, bob, ROOM, r=room_id))["room"]
    assert room["lastMessage"] == {"seq": 2, "text": ""} and room["lastSeq"] == 2


async def test_only_the_sender_may_edit_or_delete(any_server: ServerProcess) -> None:
    alice, bob, eve = [await sign_up(any_server) for _ in range(3)]
    room_id = await direct_room(any_server, alice, bob)
    message = await send(any_server, alice, room_id, "mine")
    async with http_session(any_server, bob.token) as session:
        assert await error_code(session, EDIT, m=message["id"], t="x") == "FORBIDDEN"
        assert await error_code(session, DELETE, m=message["id"]) == "FORBIDDEN"
    async with http_session(any_server, eve.token) as session:
        assert await error_code(session, EDIT, m=message["id"], t="x") in ("FORBIDDEN", "NOT_FOUND")
        assert await error_code(session, DELETE, m=message["id"]) in ("FORBIDDEN", "NOT_FOUND")
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, EDIT, m=UNKNOWN_ID, t="x") == "NOT_FOUND"
        assert await error_code(session, DELETE, m=UNKNOWN_ID) == "NOT_FOUND"
        assert await error_code(session, EDIT, m="bad-id", t="x") == "BAD_USER_INPUT"
        assert await error_code(session, DELETE, m="bad-id") == "BAD_USER_INPUT"
        assert await error_code(session, EDIT, m=message["id"], t="   ") == "BAD_USER_INPUT"
        too_long = "x" * 4_001
        assert await error_code(session, EDIT, m=message["id"], t=too_long) == "BAD_USER_INPUT"
        await call(session, DELETE, m=message["id"])
        assert await error_code(session, EDIT, m=message["id"], t="back") == "BAD_USER_INPUT"
    history = (await as_user(any_server, alice, HISTORY, r=room_id))["messages"]["edges"]
    assert [(e["node"]["text"], e["node"]["editedAt"]) for e in history] == [("", None)]


async def test_edits_arrive_once_on_both_instances_and_update_the_room_list(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    older = await send(server_a, alice, room_id, "older")
    newest = await send(server_a, alice, room_id, "newest")
    async with AsyncExitStack() as stack:
        lives = []
        for server, subprotocol in ((server_a, SUBPROTOCOLS[0]), (server_b, SUBPROTOCOLS[1])):
            session = await stack.enter_async_context(ws_session(server, subprotocol, bob.token))
            lives.append(
                await stack.enter_async_context(
                    subscribed(server, session, ROOM_ACTIVITY, r=room_id)
                )
            )
        session = await stack.enter_async_context(ws_session(server_b, TRANSPORT_WS, bob.token))
        rooms = await stack.enter_async_context(subscribed(server_b, session, ROOM_UPDATED))
        await as_user(server_b, alice, EDIT, m=newest["id"], t="newest, edited")
        await as_user(server_a, alice, EDIT, m=older["id"], t="older, edited")
        await as_user(server_b, alice, DELETE, m=newest["id"])
        await mark_read(server_a, bob, room_id, 1)
        for live in lives:
            events = [await next_activity(live) for _ in range(4)]
            assert [e.get("message", {}).get("text") for e in events] == [
                "newest, edited",
                "older, edited",
                "",
                None,
            ]
            assert events[3]["__typename"] == "ReadReceipt"
            live.assert_idle()
        # The room list changes with the edit and the delete of its lastMessage only.
        updates = [(await rooms.next())["roomUpdated"]["lastMessage"] for _ in range(2)]
        # Each shows the room as it is when it is rendered: the first may already
        # show the delete that followed the edit.
        assert updates[0] in ({"seq": 2, "text": "newest, edited"}, {"seq": 2, "text": ""})
        assert updates[1] == {"seq": 2, "text": ""}


async def test_a_shared_feed_replays_an_edited_message_as_it_is_now(
    server_a: ServerProcess,
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    # A live follower keeps the room's feed (and its recent renderings) running.
    async with (
        ws_session(server_a, TRANSPORT_WS, bob.token) as session,
        subscribed(server_a, session, MESSAGE_ADDED, r=room_id, after=None) as live,
    ):
        sent = await send(server_a, alice, room_id, "draft")
        assert (await live.next())["messageAdded"]["text"] == "draft"
        await as_user(server_a, alice, EDIT, m=sent["id"], t="final")
        async with (
            ws_session(server_a, TRANSPORT_WS, alice.token) as watcher,
            subscribed(server_a, watcher, ROOM_ACTIVITY, r=room_id) as activity,
        ):
            # The edit reached this instance once a later event did.
            await mark_read(server_a, alice, room_id, 1)
            assert (await next_activity(activity))["__typename"] == "ReadReceipt"
        catch_up = Subscription(session, MESSAGE_ADDED, {"r": room_id, "after": 0})
        try:
            assert (await catch_up.next())["messageAdded"]["text"] == "final"
        finally:
            await catch_up.cancel()


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_typing_arrives_and_expires_once_with_two_instances(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    async with AsyncExitStack() as stack:
        lives = []
        for server in (server_a, server_b):
            session = await stack.enter_async_context(ws_session(server, subprotocol, bob.token))
            lives.append(
                await stack.enter_async_context(
                    subscribed(server, session, ROOM_ACTIVITY, r=room_id)
                )
            )
        assert (await as_user(server_a, alice, SET_TYPING, r=room_id, t=True))["setTyping"]
        started = time.monotonic()
        for live in lives:
            event = await next_activity(live)
            assert event == {
                "__typename": "TypingEvent",
                "roomId": room_id,
                "typing": True,
                "user": {"id": alice.id, "username": alice.username},
            }
        for live in lives:
            event = await next_activity(live, within=TYPING_EXPIRED_WITHIN_SECONDS + 1)
            assert event["typing"] is False and event["user"]["id"] == alice.id
        elapsed = time.monotonic() - started
        assert TYPING_EXPIRY_SECONDS - 0.5 <= elapsed <= TYPING_EXPIRED_WITHIN_SECONDS
        # One expiry, swept by one instance: the next event on each stream is a later one.
        await mark_read(server_a, bob, room_id, 0)
        await send(server_a, alice, room_id, "hi")
        await mark_read(server_b, bob, room_id, 1)
        for live in lives:
            assert (await next_activity(live))["__typename"] == "ReadReceipt"
            live.assert_idle()


async def test_a_flood_of_typing_is_broadcast_at_most_once_per_interval(
    any_server: ServerProcess,
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    async with (
        ws_session(any_server, TRANSPORT_WS, bob.token) as session,
        subscribed(any_server, session, ROOM_ACTIVITY, r=room_id) as live,
        http_session(any_server, alice.token) as typer,
    ):
        started = time.monotonic()
        accepted = refused = 0
        while time.monotonic() - started < REBROADCAST_SECONDS - 1:
            try:
                await call(typer, SET_TYPING, r=room_id, t=True)
                accepted += 1
            except TransportQueryError as exc:  # the setTyping rate limit
                assert exc.errors and exc.errors[0]["extensions"]["code"] == "RATE_LIMITED"
                refused += 1
        assert accepted >= 5 and accepted + refused >= 10
        assert (await next_activity(live))["typing"] is True
        # Within the interval nothing more was broadcast: the next event is a later one.
        await mark_read(any_server, bob, room_id, 0)
        await send(any_server, alice, room_id, "x")
        await mark_read(any_server, bob, room_id, 1)
        assert (await next_activity(live))["__typename"] == "ReadReceipt"
        assert time.monotonic() - started < REBROADCAST_SECONDS + TYPING_EXPIRY_SECONDS
        live.assert_idle()


async def test_typing_ends_when_the_typer_leaves_or_closes_their_socket(
    any_server: ServerProcess,
) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob, carol])
    async with (
        ws_session(any_server, TRANSPORT_WS, alice.token) as session,
        subscribed(any_server, session, ROOM_ACTIVITY, r=room_id) as live,
    ):
        # Bob's only socket is open while he types (over HTTP); closing it ends his typing.
        async with ws_session(any_server, SUBPROTOCOLS[1], bob.token):
            await as_user(any_server, bob, SET_TYPING, r=room_id, t=True)
            assert (await next_activity(live))["typing"] is True
        event = await next_activity(live, within=TYPING_EXPIRY_SECONDS - 1)
        assert (event["typing"], event["user"]["id"]) == (False, bob.id)
        await as_user(any_server, carol, SET_TYPING, r=room_id, t=True)
        assert (await next_activity(live))["user"]["id"] == carol.id
        await as_user(any_server, carol, LEAVE, r=room_id)
        await members_now(live, alice, bob)
        event = await next_activity(live, within=TYPING_EXPIRY_SECONDS - 1)
        assert (event["typing"], event["user"]["id"]) == (False, carol.id)


async def test_read_receipts_only_when_the_marker_moves_forward(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    for text in ("1", "2", "3"):
        await send(any_server, alice, room_id, text)
    async with (
        ws_session(any_server, TRANSPORT_WS, alice.token) as session,
        subscribed(any_server, session, ROOM_ACTIVITY, r=room_id) as live,
    ):
        for seq in (2, 1, 2, 0, 3, 3):
            await mark_read(any_server, bob, room_id, seq)
        receipts = [await next_activity(live) for _ in range(2)]
        assert receipts == [
            {
                "__typename": "ReadReceipt",
                "roomId": room_id,
                "lastReadSeq": seq,
                "user": {"id": bob.id, "username": bob.username},
            }
            for seq in (2, 3)
        ]
        await as_user(any_server, alice, SET_TYPING, r=room_id, t=True)
        assert (await next_activity(live))["typing"] is True
        await as_user(any_server, alice, SET_TYPING, r=room_id, t=False)
        assert (await next_activity(live))["typing"] is False
        live.assert_idle()


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_members_changed_on_invite_and_leave_and_the_leaver_is_cut_off(
    any_server: ServerProcess, subprotocol: str
) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob])
    await befriend_all(any_server, alice, [carol])  # a friend is added at once
    async with (
        ws_session(any_server, subprotocol, alice.token) as alice_socket,
        subscribed(any_server, alice_socket, ROOM_ACTIVITY, r=room_id) as watching,
        ws_session(any_server, subprotocol, bob.token) as bob_socket,
        subscribed(any_server, bob_socket, ROOM_ACTIVITY, r=room_id) as leaving,
    ):
        await as_user(any_server, alice, INVITE, r=room_id, u=[carol.id])
        for live in (watching, leaving):
            event = await members_now(live, alice, bob, carol)
            assert event["room"]["id"] == room_id
        await as_user(any_server, bob, LEAVE, r=room_id)
        await members_now(watching, alice, carol)
        with pytest.raises(Exception) as ended:
            await leaving.next()
        assert "FORBIDDEN" in repr(ended.value) or "no longer a member" in repr(ended.value)
        assert await error_code(bob_socket, ROOM_ACTIVITY, r=room_id) == "FORBIDDEN"


async def test_room_activity_and_typing_refuse_strangers(any_server: ServerProcess) -> None:
    alice, bob, eve = [await sign_up(any_server) for _ in range(3)]
    room_id = await direct_room(any_server, alice, bob)
    async with ws_session(any_server, TRANSPORT_WS, eve.token) as session:
        assert await error_code(session, ROOM_ACTIVITY, r=room_id) == "FORBIDDEN"
        assert await error_code(session, ROOM_ACTIVITY, r=UNKNOWN_ID) == "NOT_FOUND"
        assert await error_code(session, ROOM_ACTIVITY, r="bad-id") == "BAD_USER_INPUT"
    async with http_session(any_server, eve.token) as session:
        assert await error_code(session, SET_TYPING, r=room_id, t=True) == "FORBIDDEN"
        assert await error_code(session, SET_TYPING, r=UNKNOWN_ID, t=True) == "NOT_FOUND"
        assert await error_code(session, SET_TYPING, r="bad-id", t=True) == "BAD_USER_INPUT"


async def test_members_share_one_rendering_of_each_activity_event(
    server_a: ServerProcess,
) -> None:
    alice = await sign_up(server_a)
    members = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, members)
    sent = await send(server_a, alice, room_id, "shared")
    async with AsyncExitStack() as stack:
        lives: list[Subscription] = []
        for member in members:
            for subprotocol in SUBPROTOCOLS:
                session = await stack.enter_async_context(
                    ws_session(server_a, subprotocol, member.token)
                )
                lives.append(
                    await stack.enter_async_context(
                        subscribed(server_a, session, SHARED_ACTIVITY, r=room_id)
                    )
                )
        before = await metric(server_a, RENDERINGS)
        await as_user(server_a, alice, SET_TYPING, r=room_id, t=True)
        await as_user(server_a, alice, EDIT, m=sent["id"], t="shared, edited")
        await mark_read(server_a, members[0], room_id, 1)
        late_creation = 0  # the room's MembersChanged, if it was consumed after `before`
        for index, live in enumerate(lives):
            kinds = [activity(await live.next())["__typename"] for _ in range(3)]
            while kinds[0] == "MembersChanged":
                late_creation += index == 0
                kinds = [*kinds[1:], activity(await live.next())["__typename"]]
            assert kinds == ["TypingEvent", "MessageUpdated", "ReadReceipt"]
        for live in lives:
            live.assert_idle()
        assert await metric(server_a, RENDERINGS) - before == 3 + late_creation


def test_an_activity_selection_that_reads_the_viewer_is_not_shared_between_viewers() -> None:
    schema = build_schema()._schema
    shared = _analyse(schema, SHARED_ACTIVITY, None)
    assert shared is not None and not shared.viewer_scoped
    # MembersChanged.room reads the room for the viewer (lastReadSeq, unreadCount).
    per_viewer = _analyse(schema, ROOM_ACTIVITY, None)
    assert per_viewer is not None and per_viewer.viewer_scoped


# Once Kafka is back (its stop and start are bounded in tests/support/kafka_outage.py).
OUTAGE_CATCH_UP_SECONDS = 60.0


async def edits_and_deletes_made_while_kafka_is_down(
    servers: OutageServers, outage: KafkaOutage
) -> None:
    server_a, server_b = servers.a, servers.b
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    first = await send(server_a, alice, room_id, "one")
    second = await send(server_a, alice, room_id, "two")
    async with (
        ws_session(server_b, TRANSPORT_WS, bob.token) as session,
        subscribed(server_b, session, ROOM_ACTIVITY, r=room_id) as live,
    ):
        async with outage.down():
            await as_user(server_a, alice, EDIT, m=first["id"], t="one, edited")
            await as_user(server_a, alice, DELETE, m=second["id"])
        events = [await next_activity(live, within=OUTAGE_CATCH_UP_SECONDS) for _ in range(2)]
        by_seq = {event["message"]["seq"]: event["message"] for event in events}
        assert by_seq[1]["text"] == "one, edited" and by_seq[2]["deleted"] is True
        await mark_read(server_a, bob, room_id, 2)
        assert (await next_activity(live, within=OUTAGE_CATCH_UP_SECONDS))[
            "__typename"
        ] == "ReadReceipt"
        live.assert_idle()


@pytest.mark.restarts_kafka(scenario=edits_and_deletes_made_while_kafka_is_down)
@pytest.mark.timeout(SHARED_OUTAGE_TEST_SECONDS)
async def test_edits_and_deletes_made_while_kafka_is_down_arrive_once_it_is_back_broker_down(
    kafka_outage: SharedOutage,
) -> None:
    kafka_outage.check(edits_and_deletes_made_while_kafka_is_down)
