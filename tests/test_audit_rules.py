"""Rules an attacker probed (issue 20, items 2, 3 and 8), driven as users drive them.

- A block closes an existing DIRECT room both ways at once, on every instance, and
  unblocking opens it again; in a GROUP the blocker gets no typing or receipts from
  the blocked user.
- Every action that fans out or costs a hash has a budget; sessions per user are
  capped, the oldest ending first (sockets closed as logOut closes them); a markRead
  that does not move the marker publishes nothing.
- A push device goes with the session that registered it, however that session ends.

The budget, cap and push tests share one server with small budgets, a small session
cap and a webhook push receiver; the others run on the suite's two instances.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from auth.sessions import SessionStore, session_id
from tests.support.chat import (
    CREATE_GROUP,
    HISTORY,
    LEAVE,
    MARK_READ,
    REGISTER_DEVICE,
    SEARCH,
    as_user,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    LEGACY_WS,
    TRANSPORT_WS,
    Account,
    Subscription,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.push_receiver import PushReceiver, running_push_receiver, webhook_pusher
from tests.support.raw_socket import raw_socket
from tests.support.server import ServerProcess
from tests.test_blocking import BLOCK, UNBLOCK, refusal
from tests.test_limits import assert_limited, fresh_address, post
from tests.test_sessions import CLOSE_WITHIN_SECONDS, LOG_IN, assert_session_ended

PASSWORD = "correct horse battery"
SEND = "mutation($r: ID!, $t: String!) { sendMessage(roomId: $r, text: $t) { id seq } }"
EDIT = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { seq } }"
DELETE = "mutation($m: ID!) { deleteMessage(messageId: $m) { seq } }"
SET_TYPING = "mutation($r: ID!, $t: Boolean!) { setTyping(roomId: $r, typing: $t) }"
ROOM_ACTIVITY = """
subscription($r: ID!) {
  roomActivity(roomId: $r) {
    __typename
    ... on TypingEvent { typing user { id } }
    ... on ReadReceipt { lastReadSeq user { id } }
  }
}
"""
ROOM_MARKERS = "subscription { roomUpdated { id lastSeq lastReadSeq } }"
# Each new budget: two calls at once, one back a minute (no refill within a test);
# log-ins get a few more, for the session cap's tests to log in past the cap.
BUDGET = 2
LOG_IN_BUDGET = 6
DEVICE_BUDGET = 3  # a user registering a device in each of three sessions
SESSION_CAP = 3
BUDGETS = {
    "EDIT_MESSAGE": BUDGET,
    "DELETE_MESSAGE": BUDGET,
    "MARK_READ": BUDGET,
    "SEARCH_USERS": BUDGET,
    "REGISTER_PUSH_DEVICE": DEVICE_BUDGET,
    "LEAVE_ROOM": BUDGET,
    "BLOCK_USER": BUDGET,
    "LOG_IN_PER_USERNAME": LOG_IN_BUDGET,
    "LOG_IN_PER_ADDRESS": LOG_IN_BUDGET,
}
RULES_LIMITS = {
    **{f"PLOP_{name}_LIMIT": str(count) for name, count in BUDGETS.items()},
    **{f"PLOP_{name}_LIMIT_SECONDS": "120" for name in BUDGETS},
    "PLOP_MAX_SESSIONS_PER_USER": str(SESSION_CAP),
    "PLOP_FORWARDED_ALLOW_IPS": "127.0.0.1",
}


def assert_conversation_blocked(error: Any) -> None:
    assert error["extensions"]["code"] == "FORBIDDEN", error
    assert "blocked" in error["message"], error


async def history_texts(server: ServerProcess, reader: Account, room_id: str) -> list[str]:
    page = (await as_user(server, reader, HISTORY, r=room_id, last=100))["messages"]
    return [edge["node"]["text"] for edge in page["edges"]]


# --- item 2: a block reaches the rooms that already exist ---------------------------


async def test_a_block_closes_an_existing_direct_room_at_once_on_every_instance(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    blocker, blocked = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, blocked, blocker)
    # The blocked user's sends are known to instance B before the block (its send path
    # keeps the room), and the block is made on instance A.
    first = (await as_user(server_b, blocked, SEND, r=room_id, t="before"))["sendMessage"]
    await as_user(server_b, blocked, SET_TYPING, r=room_id, t=True)
    await as_user(server_a, blocker, BLOCK, u=blocked.id)

    for server in (server_b, server_a):
        for user in (blocked, blocker):  # either side of a block closes the conversation
            assert_conversation_blocked(await refusal(server, user, SEND, r=room_id, t="after"))
            assert_conversation_blocked(await refusal(server, user, SET_TYPING, r=room_id, t=True))
            assert_conversation_blocked(await refusal(server, user, MARK_READ, r=room_id, s=1))
        assert_conversation_blocked(await refusal(server, blocked, EDIT, m=first["id"], t="edit"))
    # The history stays readable to both.
    assert await history_texts(server_b, blocked, room_id) == ["before"]
    assert await history_texts(server_a, blocker, room_id) == ["before"]

    await as_user(server_a, blocker, UNBLOCK, u=blocked.id)
    await as_user(server_b, blocked, SEND, r=room_id, t="again")
    await as_user(server_b, blocked, EDIT, m=first["id"], t="edited")
    await as_user(server_b, blocker, MARK_READ, r=room_id, s=2)
    assert await history_texts(server_a, blocker, room_id) == ["edited", "again"]


def activity(result: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = result["roomActivity"]
    return event


async def next_of(live: Subscription, *kinds: str) -> dict[str, Any]:
    """The next event of these kinds (membership changes of the room's creation may
    still arrive over Kafka after the subscription started)."""
    async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
        while (event := activity(await live.next()))["__typename"] not in kinds:
            pass
    return event


async def test_in_a_group_the_blocker_gets_no_typing_or_receipts_of_the_blocked_user(
    server_a: ServerProcess,
) -> None:
    blocker, blocked, witness = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, witness, [blocker, blocked])
    await as_user(server_a, blocker, BLOCK, u=blocked.id)
    await send(server_a, witness, room_id, "hello")
    async with (
        ws_session(server_a, LEGACY_WS, blocker.token) as blocker_socket,
        subscribed(server_a, blocker_socket, ROOM_ACTIVITY, r=room_id) as blocker_sees,
        ws_session(server_a, TRANSPORT_WS, witness.token) as witness_socket,
        subscribed(server_a, witness_socket, ROOM_ACTIVITY, r=room_id) as witness_sees,
    ):
        await as_user(server_a, blocked, SET_TYPING, r=room_id, t=True)
        await as_user(server_a, blocked, MARK_READ, r=room_id, s=1)
        typing = await next_of(witness_sees, "TypingEvent", "ReadReceipt")
        receipt = await next_of(witness_sees, "TypingEvent", "ReadReceipt")
        assert (typing["__typename"], typing["user"]["id"]) == ("TypingEvent", blocked.id)
        assert (receipt["__typename"], receipt["user"]["id"]) == ("ReadReceipt", blocked.id)
        # The room's events reach a subscriber in order: the witness's receipt comes
        # after the blocked user's, so it is the first the blocker may see.
        await as_user(server_a, witness, MARK_READ, r=room_id, s=1)
        seen = await next_of(blocker_sees, "TypingEvent", "ReadReceipt")
        assert (seen["__typename"], seen["user"]["id"]) == ("ReadReceipt", witness.id)
    # The blocked user's messages still show in the group.
    await send(server_a, blocked, room_id, "still shared")
    assert await history_texts(server_a, blocker, room_id) == ["hello", "still shared"]


# --- item 3: budgets, the session cap, and a markRead that moves nothing ------------


async def test_a_mark_read_that_does_not_move_the_marker_publishes_nothing(
    server_a: ServerProcess,
) -> None:
    reader, writer = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, writer, reader)
    await send(server_a, writer, room_id, "one")
    async with (
        ws_session(server_a, TRANSPORT_WS, reader.token) as socket,
        subscribed(server_a, socket, ROOM_MARKERS) as updates,
    ):

        async def until(last_seq: int, last_read_seq: int) -> None:
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                while (await updates.next())["roomUpdated"] != {
                    "id": room_id,
                    "lastSeq": last_seq,
                    "lastReadSeq": last_read_seq,
                }:
                    pass

        await as_user(server_a, reader, MARK_READ, r=room_id, s=1)
        await until(1, 1)
        await send(server_a, writer, room_id, "two")
        await until(2, 1)
        for _ in range(3):  # the marker is at 1 already: nothing moves
            await as_user(server_a, reader, MARK_READ, r=room_id, s=1)
        await send(server_a, writer, room_id, "three")
        assert (await updates.next())["roomUpdated"]["lastSeq"] == 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushReceiver]:
    async with running_push_receiver(tmp_path_factory.mktemp("rules-push")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rules(real_env: dict[str, str], receiver: PushReceiver) -> AsyncIterator[ServerProcess]:
    """One instance with small new budgets, a small session cap and webhook pushes."""
    async with webhook_pusher("rules", {**real_env, **RULES_LIMITS}, receiver) as server:
        yield server


async def assert_budget(
    server: ServerProcess, calls: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """Each call (token, query, variables) but the last passes; the last one, past the
    budget, is RATE_LIMITED with a retryAfter."""
    for token, query, variables in calls[:-1]:
        reply = await post(server, query, token, **variables)
        assert not reply.errors, reply.errors
    token, query, variables = calls[-1]
    assert_limited(await post(server, query, token, **variables))


async def test_every_action_that_fans_out_or_hashes_has_a_budget(rules: ServerProcess) -> None:
    user, other = await sign_up(rules), await sign_up(rules)
    room_id = await direct_room(rules, user, other)
    sent = [(await send(rules, user, room_id, f"m{i}"))["id"] for i in range(BUDGET + 1)]
    me = user.token

    await assert_budget(
        rules, [(me, EDIT, {"m": sent[0], "t": f"e{i}"}) for i in range(BUDGET + 1)]
    )
    await assert_budget(rules, [(me, DELETE, {"m": each}) for each in sent])
    await assert_budget(rules, [(me, MARK_READ, {"r": room_id, "s": seq}) for seq in (1, 2, 3)])
    await assert_budget(rules, [(me, SEARCH, {"q": other.username}) for _ in range(BUDGET + 1)])
    await assert_budget(
        rules,
        [
            (me, REGISTER_DEVICE, {"p": "WEBHOOK", "t": f"{me[:8]}-{i}"})
            for i in range(DEVICE_BUDGET + 1)
        ],
    )
    groups = [
        (await as_user(rules, user, CREATE_GROUP, t="g", m=[other.id]))["createGroupRoom"]["id"]
        for _ in range(BUDGET + 1)
    ]
    await assert_budget(rules, [(me, LEAVE, {"r": group}) for group in groups])
    block_calls = [(me, BLOCK, {"u": other.id}), (me, UNBLOCK, {"u": other.id})]
    await assert_budget(rules, [*block_calls, (me, BLOCK, {"u": other.id})])


async def test_successful_log_ins_have_budgets_per_username_and_per_address(
    rules: ServerProcess,
) -> None:
    account = await sign_up(rules)
    for _ in range(LOG_IN_BUDGET):
        reply = await post(rules, LOG_IN, address=fresh_address(), u=account.username, p=PASSWORD)
        assert not reply.errors, reply.errors
    assert_limited(
        await post(rules, LOG_IN, address=fresh_address(), u=account.username, p=PASSWORD)
    )

    others = [await sign_up(rules) for _ in range(LOG_IN_BUDGET + 1)]
    address = fresh_address()
    for other in others[:LOG_IN_BUDGET]:
        reply = await post(rules, LOG_IN, address=address, u=other.username, p=PASSWORD)
        assert not reply.errors, reply.errors
    last = others[LOG_IN_BUDGET]
    assert_limited(await post(rules, LOG_IN, address=address, u=last.username, p=PASSWORD))


async def log_in(server: ServerProcess, account: Account) -> Account:
    reply = await post(server, LOG_IN, address=fresh_address(), u=account.username, p=PASSWORD)
    assert reply.data is not None and not reply.errors, reply.errors
    return Account(reply.data["logIn"]["token"], account.id, account.username, account.display_name)


async def is_signed_in(server: ServerProcess, account: Account) -> bool:
    reply = await post(server, "{ me { id } }", account.token)
    if reply.errors:
        assert reply.code == "UNAUTHENTICATED", reply.errors
        return False
    return True


@pytest.mark.parametrize("subprotocol", [TRANSPORT_WS, LEGACY_WS])
async def test_past_the_session_cap_the_oldest_session_ends_and_its_sockets_close(
    rules: ServerProcess, subprotocol: str
) -> None:
    first = await sign_up(rules)
    async with raw_socket(rules, subprotocol, first.token) as socket:
        await socket.subscribe("1", "subscription { roomAdded { id } }", {})
        later = [await log_in(rules, first) for _ in range(SESSION_CAP - 1)]
        assert await is_signed_in(rules, first)
        newest = await log_in(rules, first)  # one past the cap: the oldest session ends
        assert_session_ended(socket, await socket.ending(CLOSE_WITHIN_SECONDS))
    assert not await is_signed_in(rules, first)
    for session in [*later, newest]:
        assert await is_signed_in(rules, session)


async def test_the_session_cap_ends_the_oldest_live_sessions_never_the_new_one() -> None:
    store = SessionStore(
        fakeredis.FakeAsyncRedis(decode_responses=True), ttl_seconds=60, max_per_user=2
    )
    first, second = await store.create("u1"), await store.create("u1")
    other_user = await store.create("u2")
    assert first.ended == second.ended == other_user.ended == ()
    third = await store.create("u1")
    assert third.ended == (first_id := session_id(first.token),)
    assert await store.user_id_for(first.token) is None
    # A revoked session no longer counts against the cap.
    await store.revoke(second.token)
    fourth = await store.create("u1")
    assert fourth.ended == ()
    assert await store.live([first_id, *map(session_id, (third.token, fourth.token))]) == {
        session_id(third.token),
        session_id(fourth.token),
    }
    assert await store.user_id_for(other_user.token) == "u2"


# --- item 8: a push device goes with its session ------------------------------------


def device_token(name: str) -> str:
    return f"{name}-{time.monotonic_ns()}"


async def test_a_device_gets_no_push_once_the_session_that_registered_it_ended(
    rules: ServerProcess, receiver: PushReceiver, real_env: dict[str, str]
) -> None:
    sender, owner = await sign_up(rules), await sign_up(rules)
    # The sign-up's session ends as the third of these passes the cap.
    expiring, capped, kept = [await log_in(rules, owner) for _ in range(3)]
    devices = {}
    for name, session in (("expiring", expiring), ("capped", capped), ("kept", kept)):
        devices[name] = device_token(name)
        await as_user(rules, session, REGISTER_DEVICE, p="WEBHOOK", t=devices[name])
    # The expiring session's key goes as Redis lets it expire; the capped one ends
    # when the cap is passed again.
    redis = Redis.from_url(real_env["PLOP_REDIS_URL"])
    try:
        await redis.delete("plop:session:" + hashlib.sha256(expiring.token.encode()).hexdigest())
    finally:
        await redis.aclose()
    await log_in(rules, owner)  # within the cap: the expired session no longer counts
    assert await is_signed_in(rules, capped)
    await log_in(rules, owner)  # past it: the oldest live one, "capped", ends

    room_id = await direct_room(rules, sender, owner)
    await send(rules, sender, room_id, "first")
    await send(rules, sender, room_id, "second")
    # A room's messages are pushed in order, each to all its devices before the next.
    pushes = await receiver.wait_for(2, devices["kept"])
    assert [push.body for push in pushes] == ["first", "second"]
    assert receiver.for_token(devices["expiring"]) == []
    assert receiver.for_token(devices["capped"]) == []
