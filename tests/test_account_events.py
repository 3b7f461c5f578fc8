"""events(since): the whole account on one subscription.

Against the embedded default and the real services (two instances, A and B, over
Kafka), on both WebSocket subprotocols: each message once and in seq order per room
under concurrent senders, resuming from any event's token, rooms joined and left
mid-stream, more rooms than the per-socket subscription cap, and the tokens' rules.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest
from gql import GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from redis.asyncio import Redis

from live.account_cursor import Cursor
from services.sync_tokens import MAX_TOKEN_CHARS, SyncTokens
from settings import Settings
from tests.support.chat import (
    INVITE,
    MARK_READ,
    SEND,
    as_user,
    befriend_all,
    group_room,
    send,
    send_many,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    Account,
    Subscription,
    call,
    http_session,
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
from tests.support.rich_messages import ADD_REACTION
from tests.support.server import ServerProcess

EVENTS = """
subscription($s: String) {
  events(since: $s) {
    token
    payload {
      __typename
      ... on MessageAdded { message { id roomId seq text } }
      ... on MessageUpdated { message { id roomId seq text deleted } }
      ... on RoomJoined { room { id } }
      ... on RoomLeft { roomId }
      ... on RoomInvited { invitation { id room { id } } }
      ... on MembersChanged { room { id members { id } } }
      ... on ReadReceipt { roomId lastReadSeq user { id } }
      ... on TypingEvent { roomId typing user { id } }
      ... on ReactionChanged { emoji added user { id } message { id } }
    }
  }
}
"""
# PLOP_SYNC_RETENTION_SECONDS of the session's servers: the default.
RETENTION_SECONDS = Settings().sync_retention_seconds
REMOVE = "mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }"
CREATE_GROUP = (
    "mutation($t: String!, $m: [ID!]!) { createGroupRoom(title: $t, memberIds: $m) { id } }"
)


def events_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [result["events"] for result in results]


def messages_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        event["payload"]["message"]
        for event in events
        if event["payload"]["__typename"] == "MessageAdded"
    ]


async def take_messages(subscription: Subscription, count: int) -> list[dict[str, Any]]:
    """Events until ``count`` messages came; every event on the way is returned."""
    taken: list[dict[str, Any]] = []
    while len(messages_of(taken)) < count:
        taken.append((await subscription.next())["events"])
    return taken


def assert_each_once_in_order(messages: list[dict[str, Any]]) -> dict[str, list[int]]:
    by_room: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        by_room[message["roomId"]].append(message["seq"])
    for room_id, seqs in by_room.items():
        assert seqs == sorted(set(seqs)), f"room {room_id}: {seqs}"
    return by_room


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_every_message_of_every_room_arrives_once_in_order_under_concurrent_senders(
    any_server: ServerProcess, subprotocol: str
) -> None:
    viewer, first, second = [await sign_up(any_server, p) for p in ("v", "a", "b")]
    one = await group_room(any_server, first, [viewer])
    two = await group_room(any_server, second, [viewer])
    both = await group_room(any_server, first, [viewer, second])
    async with (
        ws_session(any_server, subprotocol, viewer.token) as session,
        subscribed(any_server, session, EVENTS, s=None) as events,
    ):
        await asyncio.gather(
            send_many(any_server, first, one, 15, "one"),
            send_many(any_server, second, two, 15, "two"),
            send_many(any_server, first, both, 15, "both-a"),
            send_many(any_server, second, both, 15, "both-b"),
        )
        taken = await take_messages(events, 60)
    by_room = assert_each_once_in_order(messages_of(taken))
    assert {room: len(seqs) for room, seqs in by_room.items()} == {one: 15, two: 15, both: 30}
    assert by_room[both] == list(range(1, 31))
    assert all(len(event["token"]) <= MAX_TOKEN_CHARS for event in taken)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_resuming_from_a_middle_event_gives_exactly_what_followed_it(
    any_server: ServerProcess, subprotocol: str
) -> None:
    viewer, sender = await sign_up(any_server, "v"), await sign_up(any_server, "s")
    rooms = [await group_room(any_server, sender, [viewer], f"r{n}") for n in range(2)]
    async with (
        ws_session(any_server, subprotocol, viewer.token) as session,
        subscribed(any_server, session, EVENTS, s=None) as events,
    ):
        for n in range(6):
            await send(any_server, sender, rooms[n % 2], f"m{n}")
        first = await take_messages(events, 6)
    middle = next(
        event for event in first if event["payload"].get("message", {}).get("text") == "m2"
    )
    for n in range(6, 10):  # sent while nobody listens
        await send(any_server, sender, rooms[n % 2], f"m{n}")
    async with (
        ws_session(any_server, subprotocol, viewer.token) as session,
        subscribed(any_server, session, EVENTS, s=middle["token"]) as resumed,
    ):
        again = await take_messages(resumed, 7)
        assert [m["text"] for m in messages_of(again)] == [f"m{n}" for n in range(3, 10)]
        await send(any_server, sender, rooms[0], "live")
        live_events = await take_messages(resumed, 1)
        assert [m["text"] for m in messages_of(live_events)] == ["live"]
        # From the live message's own token: nothing before it comes again.
        last_token = live_events[-1]["token"]
    async with (
        ws_session(any_server, subprotocol, viewer.token) as session,
        subscribed(any_server, session, EVENTS, s=last_token) as after_live,
    ):
        await send(any_server, sender, rooms[1], "after")
        (after,) = messages_of(await take_messages(after_live, 1))
        assert after["text"] == "after"


EDIT = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { id } }"
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { id } }"


def described(event: dict[str, Any]) -> tuple[str, str]:
    """An event's kind and what it is about, to compare a stream with its replay."""
    payload = event["payload"]
    kind: str = payload["__typename"]
    if kind == "MessageAdded":
        return kind, payload["message"]["text"]
    if kind == "MessageUpdated":
        return kind, f"{payload['message']['text']}/{payload['message']['deleted']}"
    if kind == "ReactionChanged":
        return kind, f"{payload['emoji']}/{payload['added']}"
    if kind == "ReadReceipt":
        return kind, str(payload["lastReadSeq"])
    if kind == "MembersChanged":
        return kind, str(len(payload["room"]["members"]))
    return kind, ""


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_edits_reactions_receipts_and_members_arrive_live_and_again_from_a_token(
    any_server: ServerProcess, subprotocol: str
) -> None:
    viewer, other, newcomer = [await sign_up(any_server, p) for p in ("v", "o", "n")]
    await befriend_all(any_server, other, [newcomer])
    room = await group_room(any_server, other, [viewer])
    async with (
        ws_session(any_server, subprotocol, viewer.token) as session,
        subscribed(any_server, session, EVENTS, s=None) as events,
    ):
        first = await send(any_server, other, room, "first")
        (start,) = await take_messages(events, 1)
        await as_user(any_server, other, EDIT, m=first["id"], t="first, edited")
        await as_user(any_server, other, ADD_REACTION, m=first["id"], e="👍")
        await as_user(any_server, other, MARK_READ, r=room, s=1)
        await as_user(any_server, other, INVITE, r=room, u=[newcomer.id])
        second = await send(any_server, other, room, "second")
        await as_user(any_server, other, DELETE, m=second["id"])
        await send(any_server, other, room, "last")
        live = await take_messages(events, 2)
        while described(live[-1]) != ("MessageAdded", "last"):
            live.append((await events.next())["events"])
    expected = [
        ("MessageUpdated", "first, edited/False"),
        ("ReactionChanged", "👍/True"),
        ("ReadReceipt", "1"),
        ("MembersChanged", "3"),
        ("MessageAdded", "second"),
        ("MessageUpdated", "/True"),
        ("MessageAdded", "last"),
    ]
    assert [described(event) for event in live] == expected
    async with (
        ws_session(any_server, subprotocol, viewer.token) as session,
        subscribed(any_server, session, EVENTS, s=start["token"]) as replay,
    ):
        again = [(await replay.next())["events"] for _ in expected]
    # The replay shows each event as stored; a message shows as it stands now.
    assert [kind for kind, _ in map(described, again)] == [kind for kind, _ in expected]
    assert [described(event) for event in again][1:4] == expected[1:4]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_socket_dropped_mid_replay_resumes_with_no_gap(
    server_a: ServerProcess, subprotocol: str
) -> None:
    viewer, sender = await sign_up(server_a, "v"), await sign_up(server_a, "s")
    room = await group_room(server_a, sender, [viewer])
    async with (
        ws_session(server_a, subprotocol, viewer.token) as session,
        subscribed(server_a, session, EVENTS, s=None) as events,
    ):
        await send(server_a, sender, room, "start")
        (start,) = await take_messages(events, 1)
    await send_many(server_a, sender, room, 60, "backlog")
    async with (
        ws_session(server_a, subprotocol, viewer.token) as session,
        subscribed(server_a, session, EVENTS, s=start["token"]) as replay,
    ):
        part = await take_messages(replay, 25)
    # The socket closed with 35 of the backlog still to come.
    async with (
        ws_session(server_a, subprotocol, viewer.token) as session,
        subscribed(server_a, session, EVENTS, s=part[-1]["token"]) as rest,
    ):
        remaining = await take_messages(rest, 35)
    seqs = [m["seq"] for m in messages_of(part) + messages_of(remaining)]
    assert seqs == list(range(2, 62))


async def test_rooms_joined_and_left_mid_stream_across_two_instances(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    viewer, owner = await sign_up(server_a, "v"), await sign_up(server_a, "o")
    await befriend_all(server_a, owner, [viewer])
    kept = await group_room(server_a, owner, [viewer], "kept")
    async with (
        ws_session(server_b, SUBPROTOCOLS[0], viewer.token) as session,
        subscribed(server_b, session, EVENTS, s=None) as events,
    ):
        joined = (await as_user(server_a, owner, CREATE_GROUP, t="new", m=[viewer.id]))[
            "createGroupRoom"
        ]["id"]
        await send(server_a, owner, joined, "hello")
        taken = await take_messages(events, 1)
        kinds = [event["payload"]["__typename"] for event in taken]
        assert kinds[0] == "RoomJoined" and taken[0]["payload"]["room"]["id"] == joined
        assert messages_of(taken)[0]["text"] == "hello"
        await as_user(server_a, owner, REMOVE, r=joined, u=viewer.id)
        left = (await events.next())["events"]
        while left["payload"]["__typename"] != "RoomLeft":
            assert left["payload"]["__typename"] == "MembersChanged", left
            left = (await events.next())["events"]
        assert left["payload"]["roomId"] == joined
        await send(server_a, owner, joined, "not for the viewer")
        await send(server_a, owner, kept, "marker")
        after = await take_messages(events, 1)
        assert [m["text"] for m in messages_of(after)] == ["marker"]
        assert all(event["payload"].get("message", {}).get("roomId") != joined for event in after)


async def _rooms_of(server: ServerProcess, creator: Account, viewer: Account) -> list[str]:
    """30 groups of the creator with the viewer (the creation limit per minute)."""
    await befriend_all(server, creator, [viewer])
    async with http_session(server, creator.token) as session:
        created = [await call(session, CREATE_GROUP, t=f"g{n}", m=[viewer.id]) for n in range(30)]
    return [each["createGroupRoom"]["id"] for each in created]


async def _send_each(server: ServerProcess, sender: Account, rooms: list[str]) -> None:
    async with http_session(server, sender.token) as session:
        for room in rooms:
            await call(session, SEND, r=room, t=f"to {room}", c=None)


async def test_one_subscription_follows_more_rooms_than_the_subscription_cap(
    server_a: ServerProcess,
) -> None:
    viewer = await sign_up(server_a, "v")
    creators = [await sign_up(server_a, f"c{n}") for n in range(5)]
    rooms = await asyncio.gather(*(_rooms_of(server_a, creator, viewer) for creator in creators))
    assert sum(map(len, rooms)) == 150
    async with (
        ws_session(server_a, SUBPROTOCOLS[1], viewer.token) as session,
        subscribed(server_a, session, EVENTS, s=None) as events,
    ):
        await asyncio.gather(
            *(
                _send_each(server_a, creator, own)
                for creator, own in zip(creators, rooms, strict=True)
            )
        )
        taken = await take_messages(events, 150)
    by_room = assert_each_once_in_order(messages_of(taken))
    assert set(by_room) == {room for own in rooms for room in own}
    assert all(seqs == [1] for seqs in by_room.values())


async def test_tokens_are_bound_to_their_viewer_and_refused_when_garbage_or_expired(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    viewer, other = await sign_up(server_a, "v"), await sign_up(server_a, "o")
    room = await group_room(server_a, other, [viewer])
    async with (
        ws_session(server_a, SUBPROTOCOLS[0], other.token) as session,
        subscribed(server_a, session, EVENTS, s=None) as events,
    ):
        await send(server_a, other, room, "x")
        (others,) = await take_messages(events, 1)
    async with ws_session(server_a, SUBPROTOCOLS[0], viewer.token) as session:
        for garbage in ("", "nonsense", "s1.AAAA.BBBB", others["token"][:-2] + "zz"):
            assert await _subscribe_error(session, garbage) == "BAD_USER_INPUT"
        assert await _subscribe_error(session, others["token"]) == "FORBIDDEN"
        redis = Redis.from_url(real_env["PLOP_REDIS_URL"], decode_responses=True)
        try:
            tokens = SyncTokens(redis, retention_seconds=24 * 3_600)
            old = await tokens.encode(
                viewer.id, Cursor(upto=1, at=time.time() - RETENTION_SECONDS - 60)
            )
        finally:
            await redis.aclose()
        error = await _subscribe_error_of(session, old)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["reason"] == "SYNC_TOKEN_EXPIRED"


async def _subscribe_error(session: Any, since: str) -> str:
    code: str = (await _subscribe_error_of(session, since))["extensions"]["code"]
    return code


async def _subscribe_error_of(session: Any, since: str) -> dict[str, Any]:
    try:
        async for _ in session.subscribe(GraphQLRequest(EVENTS, variable_values={"s": since})):
            raise AssertionError("the subscription started with a bad token")
    except TransportQueryError as exc:
        assert exc.errors
        error: dict[str, Any] = exc.errors[0]
        return error
    raise AssertionError("the subscription ended without an error")


# Once Kafka is back (its stop and start are bounded in tests/support/kafka_outage.py):
# the relay publishing the outage's messages, or a catch-up of the stream reading them.
OUTAGE_CATCH_UP_SECONDS = 60.0


async def account_stream_across_a_kafka_outage(servers: OutageServers, outage: KafkaOutage) -> None:
    server_a, server_b = servers.a, servers.b
    viewer, sender = await sign_up(server_a, "v"), await sign_up(server_a, "s")
    rooms = [await group_room(server_a, sender, [viewer], f"r{n}") for n in range(2)]
    async with (
        ws_session(server_b, SUBPROTOCOLS[0], viewer.token) as session_b,
        subscribed(server_b, session_b, EVENTS, s=None) as on_b,
        ws_session(server_a, SUBPROTOCOLS[1], viewer.token) as session_a,
        subscribed(server_a, session_a, EVENTS, s=None) as on_a,
    ):
        await send(server_a, sender, rooms[0], "before")
        received_b = messages_of(await take_messages(on_b, 1))
        received_a = messages_of(await take_messages(on_a, 1))
        async with outage.down():
            for n in range(4):  # stored although the broker is down
                await send(server_a, sender, rooms[n % 2], f"during {n}")
        received_b += messages_of(
            await asyncio.wait_for(take_messages(on_b, 4), OUTAGE_CATCH_UP_SECONDS)
        )
        received_a += messages_of(
            await asyncio.wait_for(take_messages(on_a, 4), OUTAGE_CATCH_UP_SECONDS)
        )
        await send(server_b, sender, rooms[1], "after")
        received_b += messages_of(await take_messages(on_b, 1))
        received_a += messages_of(await take_messages(on_a, 1))
    for received in (received_a, received_b):
        assert_each_once_in_order(received)
        assert sorted(m["text"] for m in received) == sorted(
            ["before", "after", *(f"during {n}" for n in range(4))]
        )


@pytest.mark.restarts_kafka(scenario=account_stream_across_a_kafka_outage)
@pytest.mark.timeout(SHARED_OUTAGE_TEST_SECONDS)
async def test_the_account_stream_gets_every_message_once_across_a_kafka_outage(
    kafka_outage: SharedOutage,
) -> None:
    kafka_outage.check(account_stream_across_a_kafka_outage)


async def test_resuming_from_tokens_counts_against_the_sync_budget(
    server_a: ServerProcess,
) -> None:
    viewer, sender = await sign_up(server_a, "v"), await sign_up(server_a, "s")
    room = await group_room(server_a, sender, [viewer])
    async with (
        ws_session(server_a, SUBPROTOCOLS[0], viewer.token) as session,
        subscribed(server_a, session, EVENTS, s=None) as events,
    ):
        await send(server_a, sender, room, "first")
        (first,) = await take_messages(events, 1)
    await send(server_a, sender, room, "replayed")
    budget = Settings().sync_limit

    async def resume(session: Any) -> str:
        request = GraphQLRequest(EVENTS, variable_values={"s": first["token"]})
        try:
            async for result in session.subscribe(request):
                assert result["events"]["payload"]["message"]["text"] == "replayed"
                return "REPLAYED"
        except TransportQueryError as exc:
            assert exc.errors
            code: str = exc.errors[0]["extensions"]["code"]
            return code
        raise AssertionError("the subscription ended without an event")

    async with ws_session(server_a, SUBPROTOCOLS[0], viewer.token) as session:
        # Twice the budget at once: the budget refills by one per two seconds only.
        codes = await asyncio.gather(*(resume(session) for _ in range(2 * budget)))
    assert set(codes) == {"REPLAYED", "RATE_LIMITED"}
    assert budget <= codes.count("REPLAYED") < 2 * budget
