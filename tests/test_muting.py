"""Muting: a member who muted a room gets no push of it until the mute ends, by an
unmute or by itself; the other members' pushes are unchanged. A hidden DIRECT room
is no muted one: its member still gets its pushes. An invitee gets none before
accepting (consent: tests/test_invitations.py).

The pushes go through the signed-webhook provider to a local receiver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from tests.support.chat import (
    CREATE_GROUP,
    LEAVE,
    REGISTER_DEVICE,
    RESPOND_INVITATION,
    ROOM_FIELDS,
    as_user,
    befriend_all,
    direct_room,
    group_room,
    invitations,
    send,
)
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
)
from tests.support.push_receiver import PushReceiver, running_push_receiver, webhook_pusher
from tests.support.server import ServerProcess

MUTE = f"""
mutation($r: ID!, $until: DateTime) {{
  muteRoom(roomId: $r, until: $until) {{ {ROOM_FIELDS} mutedUntil }}
}}
"""
UNMUTE = f"mutation($r: ID!) {{ unmuteRoom(roomId: $r) {{ {ROOM_FIELDS} mutedUntil }} }}"
MUTED_UNTIL = "query($r: ID!) { room(id: $r) { mutedUntil } }"
FOREVER = "9999-12-31T00:00:00+00:00"
# Long enough that the first message's push is decided well before the mute ends.
TIMED_MUTE_SECONDS = 5


def iso(moment: datetime) -> str:
    return moment.isoformat()


def parsed(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def muted_until(server: ServerProcess, account: Account, room_id: str) -> str | None:
    found: str | None = (await as_user(server, account, MUTED_UNTIL, r=room_id))["room"][
        "mutedUntil"
    ]
    return found


async def test_mute_rules_and_mutes_are_each_members_own(any_server: ServerProcess) -> None:
    alice, bob, eve = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob])
    now = datetime.now(UTC)
    async with http_session(any_server, bob.token) as session:
        for until in (
            iso(now - timedelta(minutes=1)),
            iso(now + timedelta(days=400)),
            "0001-01-01T00:00:00+14:00",  # before the calendar's start in UTC
            "9999-12-31T23:59:59-14:00",  # after its end
        ):
            assert await error_code(session, MUTE, r=room_id, until=until) == "BAD_USER_INPUT"
        assert await error_code(session, MUTE, r=room_id, until="tomorrow") == "BAD_USER_INPUT"
        assert await error_code(session, MUTE, r="nope", until=None) == "BAD_USER_INPUT"
        assert await error_code(session, MUTE, r="0" * 24, until=None) == "NOT_FOUND"
        assert (await call(session, MUTE, r=room_id, until=None))["muteRoom"]["mutedUntil"] == (
            FOREVER
        )
        hour = now + timedelta(hours=1)
        timed = (await call(session, MUTE, r=room_id, until=iso(hour)))["muteRoom"]
        assert abs(parsed(timed["mutedUntil"]) - hour) < timedelta(milliseconds=1)
    assert await muted_until(any_server, alice, room_id) is None  # bob's mute is his
    assert await muted_until(any_server, bob, room_id) == timed["mutedUntil"]
    assert (await as_user(any_server, bob, UNMUTE, r=room_id))["unmuteRoom"]["mutedUntil"] is None
    assert await muted_until(any_server, bob, room_id) is None
    async with http_session(any_server, eve.token) as session:
        assert await error_code(session, MUTE, r=room_id, until=None) == "FORBIDDEN"
        assert await error_code(session, UNMUTE, r=room_id) == "FORBIDDEN"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PushReceiver]:
    async with running_push_receiver(tmp_path_factory.mktemp("muting-push")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pusher(real_env: dict[str, str], receiver: PushReceiver) -> AsyncIterator[ServerProcess]:
    async with webhook_pusher("muting", real_env, receiver) as server:
        yield server


async def with_device(server: ServerProcess, account: Account) -> str:
    device = f"device-{account.id}"
    await as_user(server, account, REGISTER_DEVICE, p="WEBHOOK", t=device)
    return device


def bodies(receiver: PushReceiver, device: str) -> list[str]:
    return [push.body for push in receiver.for_token(device)]


async def test_a_muted_member_gets_no_push_while_an_unmuted_one_does(
    pusher: ServerProcess, receiver: PushReceiver, server_a: ServerProcess, server_b: ServerProcess
) -> None:
    # Muted on one instance, sent on another, pushed by a third (the services are shared).
    alice, muted, unmuted = [await sign_up(pusher) for _ in range(3)]
    room_id = await group_room(pusher, alice, [muted, unmuted])
    muted_device, unmuted_device = (
        await with_device(pusher, muted),
        await with_device(pusher, unmuted),
    )
    await as_user(server_a, muted, MUTE, r=room_id, until=None)
    await send(server_b, alice, room_id, "one")
    await receiver.wait_for(1, unmuted_device)
    # A room's messages are pushed in order, each to all its devices before the next.
    await send(server_b, alice, room_id, "two")
    await receiver.wait_for(2, unmuted_device)
    assert bodies(receiver, muted_device) == []

    await as_user(server_a, muted, UNMUTE, r=room_id)
    await send(server_b, alice, room_id, "three")
    await receiver.wait_for(1, muted_device)
    assert bodies(receiver, muted_device) == ["three"]


async def test_a_mute_ends_by_itself_at_its_time(
    pusher: ServerProcess, receiver: PushReceiver
) -> None:
    alice, muted, witness = [await sign_up(pusher) for _ in range(3)]
    room_id = await group_room(pusher, alice, [muted, witness])
    muted_device, witness_device = (
        await with_device(pusher, muted),
        await with_device(pusher, witness),
    )
    until = datetime.now(UTC) + timedelta(seconds=TIMED_MUTE_SECONDS)
    await as_user(pusher, muted, MUTE, r=room_id, until=iso(until))
    await send(pusher, alice, room_id, "while muted")
    await receiver.wait_for(1, witness_device)
    async with http_session(pusher, muted.token) as session:
        await until_unmuted(session, room_id)
    assert datetime.now(UTC) >= until - timedelta(milliseconds=50)  # not before its time
    await send(pusher, alice, room_id, "after the mute")
    await receiver.wait_for(1, muted_device)
    assert bodies(receiver, muted_device) == ["after the mute"]


async def until_unmuted(session: Any, room_id: str) -> None:
    """Asks until the server says the mute is over (its clock decides)."""
    async with asyncio.timeout(TIMED_MUTE_SECONDS + EVENT_TIMEOUT_SECONDS):
        # Another process's clock: there is no event to await for a time passing.
        while (await call(session, MUTED_UNTIL, r=room_id))["room"]["mutedUntil"]:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def test_a_hidden_direct_room_still_pushes(
    pusher: ServerProcess, receiver: PushReceiver
) -> None:
    alice, bob = await sign_up(pusher), await sign_up(pusher)
    room_id = await direct_room(pusher, alice, bob)
    device = await with_device(pusher, alice)
    assert (await as_user(pusher, alice, LEAVE, r=room_id))["leaveRoom"] is True
    await send(pusher, bob, room_id, "still here")
    (push,) = await receiver.wait_for(1, device)
    assert push.body == "still here"


async def test_an_invitee_gets_no_push_before_accepting(
    pusher: ServerProcess, receiver: PushReceiver
) -> None:
    alice, friend, stranger = [await sign_up(pusher) for _ in range(3)]
    await befriend_all(pusher, alice, [friend])
    room = (await as_user(pusher, alice, CREATE_GROUP, t="Team", m=[friend.id, stranger.id]))[
        "createGroupRoom"
    ]
    devices = {"friend": await with_device(pusher, friend)}
    devices["stranger"] = await with_device(pusher, stranger)
    await send(pusher, alice, room["id"], "one")
    await receiver.wait_for(1, devices["friend"])
    # A room's messages are pushed in order, each to all its devices before the next.
    await send(pusher, alice, room["id"], "two")
    await receiver.wait_for(2, devices["friend"])
    assert receiver.for_token(devices["stranger"]) == []

    (invitation,) = await invitations(pusher, stranger)
    await as_user(pusher, stranger, RESPOND_INVITATION, i=invitation["id"], a=True)
    await send(pusher, alice, room["id"], "three")
    pushes = await receiver.wait_for(1, devices["stranger"])
    assert [push.body for push in pushes] == ["three"]
