"""Presence: multi-device, crash-safe, no flapping, and delivered only to friends."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from tests.support.chat import (
    PRESENCE_CHANGED,
    REMOVE_FRIEND,
    RESPOND,
    SEND_FRIEND_REQUEST,
    USER_PRESENCE,
    as_user,
    befriend,
)
from tests.support.clients import (
    LEGACY_WS,
    TRANSPORT_WS,
    Account,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.server import ServerProcess

# The real-service servers' presence timing (tests/conftest.py).
TTL_SECONDS, SWEEP_SECONDS, GRACE_SECONDS = 4.0, 0.5, 1.5


def change(result: dict[str, dict[str, str]]) -> tuple[str, str]:
    event = result["presenceChanged"]
    return event["userId"], event["status"]


async def presence_of(server: ServerProcess, viewer: Account, user: Account) -> object:
    return (await as_user(server, viewer, USER_PRESENCE, u=user.id))["user"]["presence"]


async def test_online_once_offline_after_the_last_device(any_server: ServerProcess) -> None:
    user, friend = await sign_up(any_server), await sign_up(any_server)
    await befriend(any_server, user, friend)
    async with (
        ws_session(any_server, TRANSPORT_WS, friend.token) as watcher,
        subscribed(any_server, watcher, PRESENCE_CHANGED) as changes,
    ):
        async with ws_session(any_server, TRANSPORT_WS, user.token):  # the phone
            assert change(await changes.next()) == (user.id, "ONLINE")
            assert (await presence_of(any_server, friend, user)) == {
                "userId": user.id,
                "status": "ONLINE",
                "lastSeenAt": None,
            }
            async with ws_session(any_server, LEGACY_WS, user.token):  # the laptop
                pass
            # The laptop closed; the phone still lives: nothing changes.
            assert (await presence_of(any_server, friend, user))["status"] == "ONLINE"  # type: ignore[index]
        closed_at = time.time()
        offline = (await changes.next())["presenceChanged"]
        changes.assert_idle()
    assert (offline["userId"], offline["status"]) == (user.id, "OFFLINE")
    seen = datetime.fromisoformat(offline["lastSeenAt"]).timestamp()
    assert abs(seen - closed_at) < 2.0


async def test_killed_instance_users_go_offline_within_the_bound(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    doomed = ServerProcess("presence-doomed", {**real_env, "PLOP_INSTANCE_ID": "p-doomed"})
    await doomed.start()
    try:
        user, friend = await sign_up(server_a), await sign_up(server_a)
        await befriend(server_a, user, friend)
        async with (
            ws_session(server_a, TRANSPORT_WS, friend.token) as watcher,
            subscribed(server_a, watcher, PRESENCE_CHANGED) as changes,
            ws_session(doomed, TRANSPORT_WS, user.token),
        ):
            assert change(await changes.next()) == (user.id, "ONLINE")
            await doomed.kill()
            killed_at = time.monotonic()
            bound = TTL_SECONDS + SWEEP_SECONDS
            offline = await changes.next(within=bound + 5)
            elapsed = time.monotonic() - killed_at
    finally:
        await doomed.stop()
    assert change(offline) == (user.id, "OFFLINE")
    assert offline["presenceChanged"]["lastSeenAt"] is not None
    # The last heartbeat (every second) was at most a second before the kill.
    assert elapsed <= bound + 1.5, f"OFFLINE took {elapsed:.1f}s, bound {bound}s"


async def test_reconnect_within_the_grace_period_emits_nothing(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    user, friend = await sign_up(server_a), await sign_up(server_a)
    await befriend(server_a, user, friend)
    async with (
        ws_session(server_a, TRANSPORT_WS, friend.token) as watcher,
        subscribed(server_a, watcher, PRESENCE_CHANGED) as changes,
    ):
        async with ws_session(server_b, TRANSPORT_WS, user.token):
            assert change(await changes.next()) == (user.id, "ONLINE")
        # A flaky network: the user is back (on the other instance) at once.
        async with ws_session(server_a, LEGACY_WS, user.token):
            # The window under test: past the grace period and a few sweeps, during
            # which an OFFLINE/ONLINE pair would have been published.
            await asyncio.sleep(GRACE_SECONDS + 4 * SWEEP_SECONDS)
            changes.assert_idle()
            assert (await presence_of(server_a, friend, user))["status"] == "ONLINE"  # type: ignore[index]
        assert change(await changes.next()) == (user.id, "OFFLINE")


async def test_presence_goes_to_friends_only_and_stops_after_remove_friend(
    any_server: ServerProcess,
) -> None:
    user, friend, stranger, witness = [await sign_up(any_server) for _ in range(4)]
    await befriend(any_server, user, friend)
    await befriend(any_server, user, witness)  # stays a friend: shows when events went out
    async with (
        ws_session(any_server, TRANSPORT_WS, friend.token) as friend_socket,
        subscribed(any_server, friend_socket, PRESENCE_CHANGED) as to_friend,
        ws_session(any_server, LEGACY_WS, stranger.token) as stranger_socket,
        subscribed(any_server, stranger_socket, PRESENCE_CHANGED) as to_stranger,
        ws_session(any_server, TRANSPORT_WS, witness.token) as witness_socket,
        subscribed(any_server, witness_socket, PRESENCE_CHANGED) as to_witness,
    ):
        async with ws_session(any_server, TRANSPORT_WS, user.token):
            assert change(await to_witness.next()) == (user.id, "ONLINE")
            assert change(await to_friend.next()) == (user.id, "ONLINE")
            assert await presence_of(any_server, stranger, user) is None
            own = await presence_of(any_server, user, user)
            assert own is not None and own["status"] == "ONLINE"  # type: ignore[index]
            # Friendship shows presence both ways: the friend's is visible to the user.
            assert (await presence_of(any_server, user, friend))["status"] == "ONLINE"  # type: ignore[index]
            await as_user(any_server, friend, REMOVE_FRIEND, u=user.id)
            assert await presence_of(any_server, friend, user) is None
            assert await presence_of(any_server, user, friend) is None
        # The witness hears the OFFLINE; the stranger and the ex-friend, served by the
        # same instance from the same event, hear nothing.
        assert change(await to_witness.next()) == (user.id, "OFFLINE")
        async with ws_session(any_server, TRANSPORT_WS, friend.token):
            pass  # the ex-friend's own changes do not reach the user either
        async with ws_session(any_server, TRANSPORT_WS, user.token):
            assert change(await to_witness.next()) == (user.id, "ONLINE")
        assert change(await to_witness.next()) == (user.id, "OFFLINE")
        to_stranger.assert_idle()
        to_friend.assert_idle()


async def test_a_new_friends_presence_shows_at_once(any_server: ServerProcess) -> None:
    user, newcomer = await sign_up(any_server), await sign_up(any_server)
    async with (
        ws_session(any_server, TRANSPORT_WS, user.token),
        ws_session(any_server, TRANSPORT_WS, newcomer.token) as newcomer_socket,
        subscribed(any_server, newcomer_socket, PRESENCE_CHANGED) as changes,
    ):
        request = (await as_user(any_server, newcomer, SEND_FRIEND_REQUEST, u=user.id))[
            "sendFriendRequest"
        ]
        changes.assert_idle()  # not friends yet: nothing
        await as_user(any_server, user, RESPOND, r=request["id"], a=True)
        assert change(await changes.next()) == (user.id, "ONLINE")
