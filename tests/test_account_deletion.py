"""deleteAccount: what goes, what stays, and a deletion that an instance's death interrupts.

Every session ends (sockets close on every instance), friendships, friend requests
and blocks go, the user leaves every group, their messages are erased with their
seqs kept (live viewers get MessageUpdated), the account reads "Deleted user" with
``deleted: true``, and the username is never given to anyone again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from bson import ObjectId
from gql.transport.exceptions import TransportError, TransportQueryError
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from tests.support.accounts import (
    DELETE_ACCOUNT,
    LOG_IN,
    PASSWORD,
    SIGN_UP,
    client,
    log_in,
)
from tests.support.chat import (
    CREATE_DIRECT,
    CREATE_GROUP,
    FRIEND_REQUESTS,
    FRIENDS,
    HISTORY,
    INVITE,
    MESSAGE_FIELDS,
    ROOM,
    SEARCH,
    SEND_FRIEND_REQUEST,
    as_user,
    befriend,
    direct_room,
    group_room,
    invitations,
    send,
)
from tests.support.clients import SUBPROTOCOLS, Account, call, error_code, sign_up
from tests.support.raw_socket import RawSocket, raw_socket
from tests.support.server import ServerProcess
from tests.test_sessions import CLOSE_WITHIN_SECONDS, assert_session_ended

ME = "{ me { id } }"
USER = "query($u: ID!) { user(id: $u) { id username displayName deleted } }"
BLOCK = "mutation($u: ID!) { blockUser(userId: $u) }"
BLOCKED_USERS = "{ blockedUsers { id } }"
MESSAGE_UPDATED = f"""
subscription($r: ID!) {{
  roomActivity(roomId: $r) {{
    __typename ... on MessageUpdated {{ message {{ {MESSAGE_FIELDS} }} }}
  }}
}}
"""
HISTORY_WITH_SENDER = """
query($r: ID!) {
  messages(roomId: $r, first: 100) {
    edges { node { seq text deleted sender { id displayName deleted } } }
  }
}
"""
# How long the background pass of the finishing instance may take: its grace (1 s),
# its interval (0.5 s), and the steps themselves.
FINISH_WITHIN_SECONDS = 20.0


async def history(server: ServerProcess, reader: Account, room_id: str) -> list[dict[str, Any]]:
    data = await as_user(server, reader, HISTORY_WITH_SENDER, r=room_id)
    return [edge["node"] for edge in data["messages"]["edges"]]


async def updates_seen(socket: RawSocket, count: int) -> list[dict[str, Any]]:
    found = []
    for _ in range(count):
        payload = (await socket.frame())["payload"]["data"]["roomActivity"]
        assert payload["__typename"] == "MessageUpdated", payload
        found.append(payload["message"])
    return found


async def delete_account(server: ServerProcess, account: Account) -> bool:
    done: bool = (await as_user(server, account, DELETE_ACCOUNT, p=PASSWORD))["deleteAccount"]
    return done


async def assert_deleted(server: ServerProcess, alice: Account, witness: Account) -> None:
    """Alice's account is gone as the contract says, seen by another user."""
    shown = (await as_user(server, witness, USER, u=alice.id))["user"]
    assert shown == {
        "id": alice.id,
        "username": alice.username,
        "displayName": "Deleted user",
        "deleted": True,
    }
    async with client(server) as session:
        assert await error_code(session, LOG_IN, u=alice.username, p=PASSWORD) == (
            "UNAUTHENTICATED"
        )
        try:
            await call(session, SIGN_UP, u=alice.username, p=PASSWORD)
        except TransportQueryError as exc:
            assert exc.errors and exc.errors[0]["extensions"]["code"] == "CONFLICT"
            assert "deleted account" in exc.errors[0]["message"]
        else:
            raise AssertionError("signed up with a deleted account's username")
    found = (await as_user(server, witness, SEARCH, q=alice.username))["searchUsers"]
    assert alice.id not in [user["id"] for user in found]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_delete_account_erases_it_everywhere_and_keeps_the_others_history(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob, carol = await sign_up(server_a), await sign_up(server_a), await sign_up(server_a)
    dave, eve = await sign_up(server_a), await sign_up(server_a)
    await befriend(server_a, alice, bob)
    await as_user(server_a, alice, SEND_FRIEND_REQUEST, u=carol.id)
    await as_user(server_a, alice, BLOCK, u=dave.id)
    await as_user(server_a, eve, BLOCK, u=alice.id)
    direct = await direct_room(server_a, alice, bob)
    group = await group_room(server_a, bob, [alice, carol])
    for text, sender in (("a1", alice), ("b1", bob), ("a2", alice), ("b2", bob)):
        await send(server_a, sender, direct, text)
    await send(server_a, alice, group, "hello group")
    phone = await log_in(server_b, alice)

    async with (
        raw_socket(server_b, subprotocol, phone.token) as alice_socket,
        raw_socket(server_b, subprotocol, bob.token) as bob_watching,
    ):
        await alice_socket.subscribe("1", "subscription { roomAdded { id } }")
        await bob_watching.subscribe("1", MESSAGE_UPDATED, {"r": direct})
        # roomActivity is live only: wait until it is registered (a typing notice).
        await as_user(
            server_a, bob, "mutation($r: ID!) { setTyping(roomId: $r, typing: true) }", r=direct
        )
        assert (await bob_watching.frame())["payload"]["data"]["roomActivity"]["__typename"] == (
            "TypingEvent"
        )

        assert await delete_account(server_a, alice) is True

        assert_session_ended(alice_socket, await alice_socket.ending(CLOSE_WITHIN_SECONDS))
        erased = await updates_seen(bob_watching, 2)
    assert sorted(message["seq"] for message in erased) == [1, 3]
    for message in erased:
        assert (message["text"], message["deleted"]) == ("", True)
        assert message["sender"]["displayName"] == "Deleted user"

    for token in (alice.token, phone.token):
        async with client(server_b, token) as session:
            assert await error_code(session, ME) == "UNAUTHENTICATED"
    # Bob keeps the direct room and its whole history: every seq, his own text.
    shown = await history(server_b, bob, direct)
    assert [(m["seq"], m["text"], m["deleted"]) for m in shown] == [
        (1, "", True),
        (2, "b1", False),
        (3, "", True),
        (4, "b2", False),
    ]
    assert shown[0]["sender"] == {"id": alice.id, "displayName": "Deleted user", "deleted": True}
    assert shown[1]["sender"]["deleted"] is False
    direct_members = (await as_user(server_b, bob, ROOM, r=direct))["room"]["members"]
    assert {member["id"] for member in direct_members} == {alice.id, bob.id}
    # The group: alice left it; her message there is erased, its seq kept.
    group_members = (await as_user(server_b, carol, ROOM, r=group))["room"]["members"]
    assert {member["id"] for member in group_members} == {bob.id, carol.id}
    assert [(m["seq"], m["text"]) for m in await history(server_b, carol, group)] == [(1, "")]
    # Friendships, requests and blocks, both ways.
    # (group_room made bob and carol friends: that friendship stays.)
    friends = (await as_user(server_b, bob, FRIENDS))["friends"]
    assert [friend["id"] for friend in friends] == [carol.id]
    assert (await as_user(server_b, carol, FRIEND_REQUESTS))["friendRequests"] == []
    assert (await as_user(server_b, eve, BLOCKED_USERS))["blockedUsers"] == []
    await assert_deleted(server_b, alice, bob)


async def test_delete_account_with_a_wrong_password_changes_nothing(
    any_server: ServerProcess,
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    await send(any_server, alice, room_id, "still here")
    async with client(any_server, alice.token) as session:
        assert await error_code(session, DELETE_ACCOUNT, p="not my password") == "FORBIDDEN"
        assert await error_code(session, DELETE_ACCOUNT, p="") == "FORBIDDEN"
        assert await error_code(session, DELETE_ACCOUNT, p=None) == "BAD_USER_INPUT"
        assert await error_code(session, DELETE_ACCOUNT, p=12) == "BAD_USER_INPUT"
        assert (await call(session, ME))["me"]["id"] == alice.id
    async with client(any_server) as session:
        assert await error_code(session, DELETE_ACCOUNT, p=PASSWORD) == "UNAUTHENTICATED"
    shown = (await as_user(any_server, bob, USER, u=alice.id))["user"]
    assert (shown["displayName"], shown["deleted"]) == (alice.display_name, False)
    assert [m["text"] for m in await history(any_server, bob, room_id)] == ["still here"]
    await log_in(any_server, alice)


async def test_the_group_invitations_a_deleted_account_sent_go(
    any_server: ServerProcess,
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    async with client(any_server, alice.token) as session:  # a stranger gets an invitation
        await call(session, CREATE_GROUP, t="alice's", m=[bob.id])
    assert len(await invitations(any_server, bob)) == 1
    assert await delete_account(any_server, alice)
    assert await invitations(any_server, bob) == []


async def test_delete_account_twice_at_once_and_again_after(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    await send(any_server, alice, room_id, "one")
    await send(any_server, bob, room_id, "two")
    other = await log_in(any_server, alice)
    both = await asyncio.gather(
        delete_account(any_server, alice), delete_account(any_server, other)
    )
    assert list(both) == [True, True]
    # Once done, no session is left to ask again with.
    for account in (alice, other):
        async with client(any_server, account.token) as session:
            assert await error_code(session, DELETE_ACCOUNT, p=PASSWORD) == "UNAUTHENTICATED"
    shown = await history(any_server, bob, room_id)
    assert [(m["seq"], m["text"]) for m in shown] == [(1, ""), (2, "two")]
    await assert_deleted(any_server, alice, bob)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def finisher(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """An instance that takes over unfinished deletions after one second."""
    server = ServerProcess(
        "deletion-finisher",
        {
            **real_env,
            "PLOP_INSTANCE_ID": "deletion-finisher",
            "PLOP_ACCOUNT_DELETION_GRACE_SECONDS": "1",
            "PLOP_ACCOUNT_DELETION_INTERVAL_SECONDS": "0.5",
        },
    )
    await server.start()
    yield server
    await server.stop()


async def test_a_deletion_whose_instance_was_killed_half_way_is_finished(
    real_env: dict[str, str], finisher: ServerProcess
) -> None:
    """The instance serving deleteAccount is killed (SIGKILL) after the sessions
    ended and before the messages were erased: held there by the lock of one of the
    messages, as a concurrent edit would hold it. Another instance's background pass
    finishes the deletion once the lock is free."""
    doomed = ServerProcess("deletion-doomed", {**real_env, "PLOP_INSTANCE_ID": "doomed"})
    await doomed.start()
    try:
        alice, bob = await sign_up(doomed), await sign_up(doomed)
        room_id = await direct_room(doomed, alice, bob)
        sent = [await send(doomed, alice, room_id, f"m{n}") for n in range(3)]
        await send(doomed, bob, room_id, "reply")
        phone = await log_in(doomed, alice)
        redis = Redis.from_url(real_env["PLOP_REDIS_URL"])
        try:
            lock = f"lock:message:{sent[-1]['id']}"
            # Taken over even from the relay's published marks, which take it briefly
            # (they release only their own token, so the test's stays).
            assert await redis.set(lock, "held-by-the-test", px=60_000)
            async with raw_socket(doomed, SUBPROTOCOLS[0], phone.token) as alice_socket:
                await alice_socket.subscribe("1", "subscription { roomAdded { id } }")
                deleting = asyncio.create_task(delete_account(doomed, alice))
                assert_session_ended(alice_socket, await alice_socket.ending(CLOSE_WITHIN_SECONDS))
                await doomed.kill()
            with pytest.raises((httpx.HTTPError, TransportError)):  # died with the instance
                await deleting
            # Half-way: begun (the profile reads "Deleted user") and not finished.
            shown = (await as_user(finisher, bob, USER, u=alice.id))["user"]
            assert (shown["displayName"], shown["deleted"]) == ("Deleted user", False)
            assert "m2" in [m["text"] for m in await history(finisher, bob, room_id)]
            async with client(finisher) as session:
                assert await error_code(session, LOG_IN, u=alice.username, p=PASSWORD) == (
                    "UNAUTHENTICATED"
                )
            await redis.delete(lock)
        finally:
            await redis.aclose()
        async with asyncio.timeout(FINISH_WITHIN_SECONDS):
            # Another process's background pass: nothing to await but its result.
            while not (await as_user(finisher, bob, USER, u=alice.id))["user"]["deleted"]:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        shown_history = await history(finisher, bob, room_id)
        assert [(m["seq"], m["text"]) for m in shown_history] == [
            (1, ""),
            (2, ""),
            (3, ""),
            (4, "reply"),
        ]
        await assert_deleted(finisher, alice, bob)
    finally:
        await doomed.stop()


async def test_history_paging_after_a_deletion_has_no_gaps(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    for n in range(5):
        await send(any_server, alice if n % 2 == 0 else bob, room_id, f"t{n}")
    assert await delete_account(any_server, alice) is True
    data = await as_user(any_server, bob, HISTORY, r=room_id, last=2)
    page = [edge["node"] for edge in data["messages"]["edges"]]
    assert [(m["seq"], m["text"], m["deleted"]) for m in page] == [
        (4, "t3", False),
        (5, "", True),
    ]
    assert data["messages"]["pageInfo"]["hasPreviousPage"] is True


async def test_a_deleted_account_cannot_be_reached_again(any_server: ServerProcess) -> None:
    alice, bob, carol = (
        await sign_up(any_server),
        await sign_up(any_server),
        await sign_up(any_server),
    )
    await direct_room(any_server, alice, carol)
    group = await group_room(any_server, bob, [carol])
    assert await delete_account(any_server, alice) is True
    async with client(any_server, bob.token) as session:
        # A new DM, a group, an invitation or a friend request to her: as if she never was.
        assert await error_code(session, CREATE_DIRECT, u=alice.id) == "NOT_FOUND"
        assert await error_code(session, CREATE_GROUP, t="g", m=[alice.id, carol.id]) == (
            "NOT_FOUND"
        )
        assert await error_code(session, INVITE, r=group, u=[alice.id]) == "NOT_FOUND"
        assert await error_code(session, SEND_FRIEND_REQUEST, u=alice.id) == "NOT_FOUND"
    group_members = (await as_user(any_server, carol, ROOM, r=group))["room"]["members"]
    assert alice.id not in {member["id"] for member in group_members}


async def test_a_deletion_stopped_after_its_first_step_is_finished_by_a_retry(
    server_a: ServerProcess, server_b: ServerProcess, real_env: dict[str, str]
) -> None:
    """The account is left as an instance that died right after the first step
    leaves it (marked, nothing else done: its sessions still open): logIn and signUp
    already refuse it, and deleteAccount again from an open session finishes it
    (this server's own background pass waits a minute: the retry is what finishes)."""
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    await befriend(server_a, alice, bob)
    room_id = await direct_room(server_a, alice, bob)
    await send(server_a, alice, room_id, "first")
    store: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_env["PLOP_MONGO_URL"])
    try:
        users = store.get_default_database()["users"]
        # What AccountDeletion.begin writes.
        marked = await users.update_one(
            {"_id": ObjectId(alice.id), "deletion_started_at": None},
            {
                "$set": {
                    "deletion_started_at": datetime.now(UTC),
                    "display_name": "Deleted user",
                    "display_name_key": "",
                }
            },
        )
        assert marked.modified_count == 1
    finally:
        await store.close()
    async with client(server_b) as session:
        assert await error_code(session, LOG_IN, u=alice.username, p=PASSWORD) == (
            "UNAUTHENTICATED"
        )
    assert (await as_user(server_b, bob, USER, u=alice.id))["user"]["deleted"] is False
    async with client(server_b, alice.token) as session:
        assert await error_code(session, DELETE_ACCOUNT, p="wrong") == "FORBIDDEN"
        assert (await call(session, DELETE_ACCOUNT, p=PASSWORD))["deleteAccount"] is True
    assert [m["text"] for m in await history(server_b, bob, room_id)] == [""]
    assert (await as_user(server_b, bob, FRIENDS))["friends"] == []
    await assert_deleted(server_b, alice, bob)
