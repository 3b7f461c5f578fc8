"""Blocking: what a blocked user can no longer do, what a block ends, and its pushes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from gql.transport.exceptions import TransportQueryError

from tests.support.chat import (
    CREATE_DIRECT,
    CREATE_GROUP,
    FRIEND_REQUESTS,
    FRIENDS,
    INVITE,
    PRESENCE_CHANGED,
    REGISTER_DEVICE,
    SEND_FRIEND_REQUEST,
    USER_PRESENCE,
    as_user,
    befriend,
    group_room,
    send,
)
from tests.support.clients import (
    TRANSPORT_WS,
    Account,
    call,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.push_receiver import PushReceiver, running_push_receiver, webhook_pusher
from tests.support.server import ServerProcess

BLOCK = "mutation($u: ID!) { blockUser(userId: $u) }"
UNBLOCK = "mutation($u: ID!) { unblockUser(userId: $u) }"
BLOCKED_USERS = "{ blockedUsers { id username } }"
NO_SUCH_USER = "0123456789abcdef01234567"


async def refusal(server: ServerProcess, account: Account, query: str, **variables: Any) -> Any:
    """The first error of an operation that must fail."""
    async with http_session(server, account.token) as session:
        with pytest.raises(TransportQueryError) as refused:
            await call(session, query, **variables)
    assert refused.value.errors
    return refused.value.errors[0]


def assert_forbidden_quietly(error: Any) -> None:
    """FORBIDDEN, and the message does not tell the blocked user about the block."""
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "block" not in error["message"].lower()


async def test_a_blocked_user_cannot_reach_the_blocker(any_server: ServerProcess) -> None:
    blocker, blocked, other = [await sign_up(any_server) for _ in range(3)]
    assert (await as_user(any_server, blocker, BLOCK, u=blocked.id))["blockUser"] is True

    assert_forbidden_quietly(await refusal(any_server, blocked, CREATE_DIRECT, u=blocker.id))
    assert_forbidden_quietly(
        await refusal(any_server, blocked, CREATE_GROUP, t="g", m=[other.id, blocker.id])
    )
    room_id = await group_room(any_server, blocked, [other])
    assert_forbidden_quietly(await refusal(any_server, blocked, INVITE, r=room_id, u=[blocker.id]))
    assert_forbidden_quietly(await refusal(any_server, blocked, SEND_FRIEND_REQUEST, u=blocker.id))
    # The blocked user still reaches everyone else (other is a friend by now).
    stranger = await sign_up(any_server)
    await as_user(any_server, blocked, INVITE, r=room_id, u=[stranger.id])
    await as_user(any_server, blocked, SEND_FRIEND_REQUEST, u=stranger.id)

    # Unblocked, they may meet again.
    assert (await as_user(any_server, blocker, UNBLOCK, u=blocked.id))["unblockUser"] is True
    direct = await as_user(any_server, blocked, CREATE_DIRECT, u=blocker.id)
    assert {member["id"] for member in direct["createDirectRoom"]["members"]} == {
        blocker.id,
        blocked.id,
    }
    # A block holds the blocked user's group invitations of the blocker back for a
    # cooldown, even once lifted (tests/test_consent.py).
    error = await refusal(any_server, blocked, INVITE, r=room_id, u=[blocker.id])
    assert error["extensions"]["code"] == "RATE_LIMITED"


async def test_block_input_rules_and_idempotence(any_server: ServerProcess) -> None:
    viewer, target = await sign_up(any_server), await sign_up(any_server)
    for query in (BLOCK, UNBLOCK):
        error = await refusal(any_server, viewer, query, u=viewer.id)
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        error = await refusal(any_server, viewer, query, u=NO_SUCH_USER)
        assert error["extensions"]["code"] == "NOT_FOUND"
        error = await refusal(any_server, viewer, query, u="not-an-id")
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "userId" in error["message"]

    for _ in range(2):
        assert (await as_user(any_server, viewer, BLOCK, u=target.id))["blockUser"] is True
    listed = (await as_user(any_server, viewer, BLOCKED_USERS))["blockedUsers"]
    assert listed == [{"id": target.id, "username": target.username}]
    # A block goes one way: the blocked user blocks nobody.
    assert (await as_user(any_server, target, BLOCKED_USERS))["blockedUsers"] == []
    # The blocker asking the blocked user for friendship is a clash, not a refusal.
    error = await refusal(any_server, viewer, SEND_FRIEND_REQUEST, u=target.id)
    assert error["extensions"]["code"] == "CONFLICT"

    for _ in range(2):
        assert (await as_user(any_server, viewer, UNBLOCK, u=target.id))["unblockUser"] is True
    assert (await as_user(any_server, viewer, BLOCKED_USERS))["blockedUsers"] == []


async def test_blocking_ends_the_friendship_and_declines_pending_requests(
    any_server: ServerProcess,
) -> None:
    blocker, friend, asker, asked = [await sign_up(any_server) for _ in range(4)]
    await befriend(any_server, blocker, friend)
    await as_user(any_server, asker, SEND_FRIEND_REQUEST, u=blocker.id)
    await as_user(any_server, blocker, SEND_FRIEND_REQUEST, u=asked.id)
    assert len((await as_user(any_server, blocker, FRIEND_REQUESTS))["friendRequests"]) == 2

    for user in (friend, asker, asked):
        await as_user(any_server, blocker, BLOCK, u=user.id)

    for user in (blocker, friend):
        assert (await as_user(any_server, user, FRIENDS))["friends"] == []
    for user in (blocker, asker, asked):
        assert (await as_user(any_server, user, FRIEND_REQUESTS))["friendRequests"] == []
    # Presence goes with the friendship, both ways.
    for viewer, user in ((blocker, friend), (friend, blocker)):
        found = await as_user(any_server, viewer, USER_PRESENCE, u=user.id)
        assert found["user"]["presence"] is None


def change(result: dict[str, Any]) -> tuple[str, str]:
    event = result["presenceChanged"]
    return event["userId"], event["status"]


@pytest.mark.parametrize("blocker_is", ["nobody", "watcher", "watched"])
async def test_presence_stops_both_ways_after_a_block(
    server_a: ServerProcess, blocker_is: str
) -> None:
    """Once either blocks the other, the watcher hears nothing of its ex-friend.

    With no block, the same steps make the watcher hear its friend come online. A
    witness (another friend of the watched user, on the same server) hears the
    watched user come online; a sentinel friend of the watcher comes online after
    that, so the sentinel must be the watcher's next event. Only ONLINE changes are
    used: the connecting instance publishes them at once.
    """
    server = server_a
    watcher, watched, witness, early, late = [await sign_up(server) for _ in range(5)]
    await befriend(server, watcher, watched)
    await befriend(server, witness, watched)
    await befriend(server, early, watcher)
    await befriend(server, late, watcher)
    async with (
        ws_session(server, TRANSPORT_WS, witness.token) as witness_socket,
        subscribed(server, witness_socket, PRESENCE_CHANGED) as witness_hears,
        ws_session(server, TRANSPORT_WS, watcher.token) as watcher_socket,
        subscribed(server, watcher_socket, PRESENCE_CHANGED) as watcher_hears,
        ws_session(server, TRANSPORT_WS, early.token),
    ):
        assert change(await watcher_hears.next()) == (early.id, "ONLINE")
        if blocker_is != "nobody":
            blocker, blocked = (watcher, watched) if blocker_is == "watcher" else (watched, watcher)
            await as_user(server, blocker, BLOCK, u=blocked.id)
        async with ws_session(server, TRANSPORT_WS, watched.token):
            assert change(await witness_hears.next()) == (watched.id, "ONLINE")
            async with ws_session(server, TRANSPORT_WS, late.token):
                heard = [change(await watcher_hears.next())]
                if heard[0][0] == watched.id:
                    heard.append(change(await watcher_hears.next()))
        if blocker_is == "nobody":
            assert heard == [(watched.id, "ONLINE"), (late.id, "ONLINE")]
        else:
            assert heard == [(late.id, "ONLINE")]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushReceiver]:
    async with running_push_receiver(tmp_path_factory.mktemp("block-push")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pusher(real_env: dict[str, str], receiver: PushReceiver) -> AsyncIterator[ServerProcess]:
    """One instance running the push worker, pushing to webhooks only."""
    async with webhook_pusher("block-pusher", real_env, receiver) as server:
        yield server


async def test_no_push_for_a_blocked_senders_messages(
    pusher: ServerProcess, receiver: PushReceiver
) -> None:
    recipient, sender, other = [await sign_up(pusher) for _ in range(3)]
    device = f"blocking-{recipient.id}"
    await as_user(pusher, recipient, REGISTER_DEVICE, p="WEBHOOK", t=device)
    room_id = await group_room(pusher, recipient, [sender, other])
    await send(pusher, sender, room_id, "before the block")
    (first,) = await receiver.wait_for(1, device)
    assert first.data["seq"] == "1"

    await as_user(pusher, recipient, BLOCK, u=sender.id)
    await send(pusher, sender, room_id, "after the block")
    # The same room's events are handled in seq order: once the next message is
    # pushed, the blocked sender's one was handled.
    await send(pusher, other, room_id, "from someone else")
    pushes = await receiver.wait_for(2, device)
    assert [push.data["seq"] for push in pushes] == ["1", "3"]
