"""Plop on a Redis Cluster (three masters with a replica each, started by
``scripts/services.sh start redis-cluster``), with the real Kafka and FerretDB: two
instances serve everything that lives in Redis, and a master's failover loses no
session and no spent budget.

The cluster is this file's alone, so its failover (marked ``redis_failover``) runs
beside the other files' tests, in the suite's parallel run; it is the file's last
test, on the same two servers."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from gql.transport.exceptions import TransportQueryError

from tests.support.accounts import log_in
from tests.support.chat import (
    MESSAGE_ADDED,
    PRESENCE_CHANGED,
    SEARCH,
    as_user,
    befriend,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.raw_socket import raw_socket
from tests.support.redis_cluster import (
    becomes_replica,
    kill_node,
    master_of,
    promoted_in_place_of,
    replicated,
    role_of,
    start_redis_cluster,
)
from tests.support.server import ServerProcess
from tests.test_sessions import CLOSE_WITHIN_SECONDS, assert_session_ended

SEARCH_BUDGET = 3
CLUSTER_SETTINGS = {
    "PLOP_SEARCH_USERS_LIMIT": str(SEARCH_BUDGET),
    "PLOP_SEARCH_USERS_LIMIT_SECONDS": "3600",
    # Typing ends by the sweep soon, so that the test sees it.
    "PLOP_TYPING_EXPIRY_SECONDS": "1",
}
SET_TYPING = "mutation($r: ID!, $t: Boolean!) { setTyping(roomId: $r, typing: $t) }"
ROOM_ACTIVITY = """
subscription($r: ID!) {
  roomActivity(roomId: $r) { __typename ... on TypingEvent { typing user { id } } }
}
"""
SYNC_TOKEN = "{ sync(rooms: 1, messagesPerRoom: 0) { nextToken } }"
EVENTS = """
subscription($s: String) {
  events(since: $s) { token payload { __typename ... on MessageAdded { message { seq text } } } }
}
"""
ME = "{ me { id } }"
ROOM_PRESENCE = "query($r: ID!) { room(id: $r) { members { id presence { status } } } }"
# Hot room: several members sending at once, each send under the room's turn.
SENDERS, SENDS_EACH = 3, 4
# A failover makes the keys of the dead master's slots unreachable until its replica
# is promoted; a request meanwhile may answer UNAVAILABLE, and its retry succeeds.
RETRY_WITHIN_SECONDS = 30.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster_url() -> str:
    return await asyncio.to_thread(start_redis_cluster)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def on_cluster(
    real_env: dict[str, str], cluster_url: str
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Two instances whose Redis is the cluster."""
    env = {**real_env, **CLUSTER_SETTINGS, "PLOP_REDIS_URL": cluster_url}
    servers = (
        ServerProcess("cluster-a", {**env, "PLOP_INSTANCE_ID": "cluster-a"}),
        ServerProcess("cluster-b", {**env, "PLOP_INSTANCE_ID": "cluster-b"}),
    )
    await asyncio.gather(*(server.start() for server in servers))
    yield servers
    await asyncio.gather(*(server.stop() for server in servers))


def session_key(account: Account) -> str:
    return "plop:session:" + hashlib.sha256(account.token.encode()).hexdigest()


def search_budget_key(account: Account) -> str:
    return f"limit:search-users:{account.id}"


async def search_until_refused(server: ServerProcess, account: Account) -> int:
    """searchUsers until RATE_LIMITED; how many were answered."""
    async with http_session(server, account.token) as session:
        for answered in range(SEARCH_BUDGET + 1):
            try:
                await call(session, SEARCH, q="zz")
            except TransportQueryError as refused:
                assert refused.errors is not None
                assert refused.errors[0]["extensions"]["code"] == "RATE_LIMITED", refused
                return answered
    raise AssertionError("the budget never ran out")


async def once_available(server: ServerProcess, account: Account, query: str) -> dict[str, Any]:
    """The query's answer, retried while (and only while) it answers UNAVAILABLE."""
    async with asyncio.timeout(RETRY_WITHIN_SECONDS):
        while True:
            try:
                answer: dict[str, Any] = await as_user(server, account, query)
                return answer
            except TransportQueryError as exc:
                assert exc.errors is not None
                assert exc.errors[0]["extensions"]["code"] == "UNAVAILABLE", exc
            await asyncio.sleep(0.2)  # the election is under way: ask again shortly


async def test_every_redis_feature_works_on_a_cluster(
    on_cluster: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = on_cluster
    alice, bob = await sign_up(a), await sign_up(b)
    alice_again = await log_in(b, alice)
    assert (await as_user(a, alice_again, ME))["me"]["id"] == alice.id
    room_id = await direct_room(a, alice, bob)

    # Live messages on both subprotocols, across the instances.
    last_seq = 0
    for subprotocol in SUBPROTOCOLS:
        async with (
            ws_session(b, subprotocol, bob.token) as session,
            subscribed(b, session, MESSAGE_ADDED, r=room_id, after=last_seq) as live,
        ):
            sent = await send(a, alice, room_id, subprotocol)
            assert (await live.next())["messageAdded"]["text"] == subprotocol
            last_seq = sent["seq"]

    # Presence: a friend's socket makes them ONLINE, its close OFFLINE (the sweep).
    await befriend(a, alice, bob)
    async with (
        ws_session(a, SUBPROTOCOLS[0], bob.token) as watcher,
        subscribed(a, watcher, PRESENCE_CHANGED) as changes,
    ):
        async with ws_session(b, SUBPROTOCOLS[1], alice.token):
            online = (await changes.next())["presenceChanged"]
            assert (online["userId"], online["status"]) == (alice.id, "ONLINE")
            # The members' presence of a room: one batched read over their slots.
            members = (await as_user(a, bob, ROOM_PRESENCE, r=room_id))["room"]["members"]
            assert {each["id"]: each["presence"]["status"] for each in members} == {
                alice.id: "ONLINE",
                bob.id: "ONLINE",
            }
        offline = (await changes.next())["presenceChanged"]
        assert (offline["userId"], offline["status"]) == (alice.id, "OFFLINE")

    # Typing, and its expiry by the sweep.
    async with (
        ws_session(b, SUBPROTOCOLS[1], bob.token) as session,
        subscribed(b, session, ROOM_ACTIVITY, r=room_id) as activity,
    ):
        assert (await as_user(a, alice, SET_TYPING, r=room_id, t=True))["setTyping"]
        started, ended = [(await activity.next())["roomActivity"] for _ in range(2)]
        assert (started["typing"], ended["typing"]) == (True, False)
        assert started["user"]["id"] == ended["user"]["id"] == alice.id

    # A budget shared by the instances.
    assert await search_until_refused(a, bob) == SEARCH_BUDGET
    async with http_session(b, bob.token) as session:
        assert await error_code(session, SEARCH, q="zz") == "RATE_LIMITED"

    # A hot room: sends at once from several members, each seq once, in order.
    members = [await sign_up(a) for _ in range(SENDERS)]
    hot = await group_room(a, alice, members, "hot")
    await asyncio.gather(
        *(
            send(server, member, hot, f"{index}-{turn}")
            for index, (member, server) in enumerate(zip(members, (a, b, a), strict=True))
            for turn in range(SENDS_EACH)
        )
    )
    history = await as_user(b, alice, "query($r: ID!) { room(id: $r) { lastSeq } }", r=hot)
    assert history["room"]["lastSeq"] == SENDERS * SENDS_EACH

    # A sync token, and the account's events after it.
    token = (await as_user(a, alice, SYNC_TOKEN))["sync"]["nextToken"]
    async with (
        ws_session(b, SUBPROTOCOLS[0], alice.token) as session,
        subscribed(b, session, EVENTS, s=token) as events,
    ):
        await send(a, bob, room_id, "after the token")
        payload = (await events.next())["events"]["payload"]
        assert payload["message"]["text"] == "after the token"

    # logOut on one instance closes the session's sockets on the other (both
    # subprotocols), and the session is gone everywhere.
    for subprotocol in SUBPROTOCOLS:
        leaving = await log_in(a, bob)
        async with raw_socket(b, subprotocol, leaving.token) as socket:
            await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id})
            assert (await as_user(a, leaving, "mutation { logOut }"))["logOut"] is True
            assert_session_ended(socket, await socket.ending(CLOSE_WITHIN_SECONDS))
        async with http_session(b, leaving.token) as session:
            assert await error_code(session, ME) == "UNAUTHENTICATED"


@pytest.mark.redis_failover
async def test_a_master_failover_keeps_sessions_and_spent_budgets(
    on_cluster: tuple[ServerProcess, ServerProcess], cluster_url: str
) -> None:
    """kill -9 of the master holding a user's session and budget; its replica takes
    over, and Plop carries on by itself, with the session and the spent budget.

    Redis replicates asynchronously: a write the master acknowledged but had not yet
    sent to its replica when it died is lost (Redis documents this window, usually
    well under a second). The test waits for the replica's acknowledgement (WAIT)
    before the kill, so that what it checks lies outside that window: writes the
    replica held are kept; writes of the last moment could be lost, and are not
    checked.
    """
    a, b = on_cluster
    # A user whose session and search budget are on one master (a third of users).
    async with asyncio.timeout(60):
        while True:
            user = await sign_up(a)
            master = await master_of(cluster_url, session_key(user))
            if (await master_of(cluster_url, search_budget_key(user))).port == master.port:
                break
    friend = await sign_up(a)
    room_id = await direct_room(a, user, friend)
    assert await search_until_refused(a, user) == SEARCH_BUDGET
    assert await replicated(master.port) >= 1

    await kill_node(master.port)
    promoted = await promoted_in_place_of(cluster_url, master, session_key(user))
    assert promoted.port != master.port

    # The same token still works, on both instances, with no restart of either.
    assert (await once_available(a, user, ME))["me"]["id"] == user.id
    assert (await once_available(b, user, ME))["me"]["id"] == user.id
    # The budget spent before the failover is still spent.
    async with http_session(b, user.token) as session:
        assert await error_code(session, SEARCH, q="zz") == "RATE_LIMITED"
    # Live delivery and new writes to the promoted master's slots.
    for subprotocol in SUBPROTOCOLS:
        async with (
            ws_session(b, subprotocol, user.token) as session,
            subscribed(b, session, MESSAGE_ADDED, r=room_id, after=0) as live,
        ):
            await send(a, friend, room_id, f"after the failover, {subprotocol}")
            texts = [(await live.next())["messageAdded"]["text"]]
            while texts[-1] != f"after the failover, {subprotocol}":
                texts.append((await live.next())["messageAdded"]["text"])
    # A new session (its key on any master, the promoted one included) works too.
    again = await log_in(b, user)

    # The killed node comes back as a replica of the one promoted in its place.
    await asyncio.to_thread(start_redis_cluster)
    await becomes_replica(master.port)
    assert await role_of(promoted.port) == "master"
    assert (await as_user(a, again, ME))["me"]["id"] == user.id
