"""Presence: multi-device, crash-safe, no flapping, and delivered only to friends.

A check that nothing happened waits for an event that shows the thing under test had
its chance: a control user's OFFLINE, which needs the same grace period and sweep,
or a later change on the same stream, which would arrive after anything before it.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
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
    Subscription,
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


async def events_until(
    changes: Subscription, user: Account, status: str, within: float = 30.0
) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """Events up to and including the user's next change to ``status``: (the user's
    own, in order; everyone else's)."""
    own: list[dict[str, str]] = []
    others: list[tuple[str, str]] = []
    async with asyncio.timeout(within):
        while True:
            event = (await changes.next(within))["presenceChanged"]
            if event["userId"] != user.id:
                others.append((event["userId"], event["status"]))
                continue
            own.append(event)
            if event["status"] == status:
                return own, others


async def test_online_once_offline_after_the_last_device(any_server: ServerProcess) -> None:
    user, friend, control = [await sign_up(any_server) for _ in range(3)]
    await befriend(any_server, user, friend)
    await befriend(any_server, control, friend)
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
            async with ws_session(any_server, TRANSPORT_WS, control.token):
                assert change(await changes.next()) == (control.id, "ONLINE")
                async with ws_session(any_server, LEGACY_WS, user.token):  # the laptop
                    pass
            # The laptop closed, then the control's only socket. The control's OFFLINE
            # comes from a sweep after its grace period, so by then the laptop's close
            # has had its grace period and sweep too: the phone still lives, nothing
            # changed for the user.
            assert change(await changes.next()) == (control.id, "OFFLINE")
            assert (await presence_of(any_server, friend, user))["status"] == "ONLINE"  # type: ignore[index]
        closed_at = time.time()
        # The user's own events are in order: a flap after the laptop closed would
        # show here as an OFFLINE and ONLINE before the last OFFLINE.
        own, others = await events_until(changes, user, "OFFLINE")
        changes.assert_idle()
    assert [event["status"] for event in own] == ["OFFLINE"] and others == []
    seen = datetime.fromisoformat(own[-1]["lastSeenAt"]).timestamp()
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
    user, friend, control = [await sign_up(server_a) for _ in range(3)]
    await befriend(server_a, user, friend)
    await befriend(server_a, control, friend)
    async with (
        ws_session(server_a, TRANSPORT_WS, friend.token) as watcher,
        subscribed(server_a, watcher, PRESENCE_CHANGED) as changes,
    ):
        async with AsyncExitStack() as back:
            async with ws_session(server_a, TRANSPORT_WS, control.token):
                assert change(await changes.next()) == (control.id, "ONLINE")
                async with ws_session(server_b, TRANSPORT_WS, user.token):
                    assert change(await changes.next()) == (user.id, "ONLINE")
                # A flaky network: the user is back (on the other instance) at once.
                await back.enter_async_context(ws_session(server_a, LEGACY_WS, user.token))
            # The control's only socket closed after the user's first one: when its
            # OFFLINE arrives, the user's grace period is over and a sweep has run.
            assert change(await changes.next()) == (control.id, "OFFLINE")
            assert (await presence_of(server_a, friend, user))["status"] == "ONLINE"  # type: ignore[index]
        # The user's events are in order: an OFFLINE/ONLINE pair published in the
        # window, however late it arrived, comes before this last OFFLINE.
        own, others = await events_until(changes, user, "OFFLINE")
    assert [event["status"] for event in own] == ["OFFLINE"] and others == []


async def test_presence_goes_to_friends_only_and_stops_after_remove_friend(
    any_server: ServerProcess,
) -> None:
    user, friend, stranger, witness, sweeper = [await sign_up(any_server) for _ in range(5)]
    await befriend(any_server, user, friend)
    await befriend(any_server, user, witness)  # stays a friend: shows when events went out
    # The sweeper is a friend of the ex-friend and of the stranger, never of the user:
    # its ONLINE, published after every event of the user, closes their streams.
    await befriend(any_server, sweeper, friend)
    await befriend(any_server, sweeper, stranger)
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
        async with ws_session(any_server, TRANSPORT_WS, user.token):
            assert change(await to_witness.next()) == (user.id, "ONLINE")
        assert change(await to_witness.next()) == (user.id, "OFFLINE")
        async with ws_session(any_server, TRANSPORT_WS, sweeper.token):
            # Had any of the user's events reached them, it would come first.
            assert change(await to_friend.next()) == (sweeper.id, "ONLINE")
            assert change(await to_stranger.next()) == (sweeper.id, "ONLINE")


async def test_the_ex_friends_changes_stop_reaching_the_user(any_server: ServerProcess) -> None:
    user, ex, control, late = [await sign_up(any_server) for _ in range(4)]
    await befriend(any_server, user, ex)
    await befriend(any_server, control, ex)  # hears the ex-friend's events throughout
    await befriend(any_server, user, late)  # a later event on the user's stream
    async with (
        ws_session(any_server, TRANSPORT_WS, control.token) as control_socket,
        subscribed(any_server, control_socket, PRESENCE_CHANGED) as to_control,
        ws_session(any_server, LEGACY_WS, user.token) as user_socket,
        subscribed(any_server, user_socket, PRESENCE_CHANGED) as to_user,
    ):
        async with ws_session(any_server, TRANSPORT_WS, ex.token):
            # While friends, the user's subscription hears the friend.
            assert change(await to_user.next()) == (ex.id, "ONLINE")
            assert change(await to_control.next()) == (ex.id, "ONLINE")
            await as_user(any_server, user, REMOVE_FRIEND, u=ex.id)
        assert change(await to_control.next()) == (ex.id, "OFFLINE")
        async with ws_session(any_server, TRANSPORT_WS, ex.token):
            assert change(await to_control.next()) == (ex.id, "ONLINE")
            # The instance has handed out the ex-friend's OFFLINE and ONLINE; a change
            # published after them reaches the user next, with nothing before it.
            async with ws_session(any_server, TRANSPORT_WS, late.token):
                assert change(await to_user.next()) == (late.id, "ONLINE")


async def test_a_new_friends_presence_shows_at_once(any_server: ServerProcess) -> None:
    user, newcomer, control = [await sign_up(any_server) for _ in range(3)]
    await befriend(any_server, control, newcomer)
    async with (
        ws_session(any_server, TRANSPORT_WS, user.token),
        ws_session(any_server, TRANSPORT_WS, newcomer.token) as newcomer_socket,
        subscribed(any_server, newcomer_socket, PRESENCE_CHANGED) as changes,
    ):
        request = (await as_user(any_server, newcomer, SEND_FRIEND_REQUEST, u=user.id))[
            "sendFriendRequest"
        ]
        # Not friends yet: a friend's change published after the request comes first.
        async with ws_session(any_server, TRANSPORT_WS, control.token):
            assert change(await changes.next()) == (control.id, "ONLINE")
            await as_user(any_server, user, RESPOND, r=request["id"], a=True)
            assert change(await changes.next()) == (user.id, "ONLINE")
