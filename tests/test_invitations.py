"""Consent to groups: a user added by someone who is not their friend is invited, and
joins only by accepting; until then they read and receive nothing of the room (and
get no push of it: tests/test_muting.py).

Invitations expire, spend the inviter's budget, and a decline or a block holds the
inviter back for a cooldown. Friends are added at once, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.chat import (
    CREATE_GROUP,
    HISTORY,
    INVITE,
    MESSAGE_ADDED,
    RESPOND_INVITATION,
    ROOM,
    ROOM_ADDED,
    ROOM_UPDATED,
    ROOMS,
    as_user,
    befriend_all,
    direct_room,
    group_room,
    invitations,
    send,
)
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    SUBPROTOCOLS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.server import ServerProcess
from tests.test_blocking import BLOCK, UNBLOCK, assert_forbidden_quietly, refusal
from tests.test_room_activity import ROOM_ACTIVITY, members_now

UNKNOWN_ID = "0123456789abcdef01234567"
# The short-lived server's invitations: dead after this, and this many per inviter.
SHORT_TTL_SECONDS = 3
INVITATION_BUDGET = 3


async def create_group(server: ServerProcess, me: Account, members: list[Account]) -> Any:
    """createGroupRoom as the app calls it, friends or not; returns the room."""
    data = await as_user(server, me, CREATE_GROUP, t="Team", m=[member.id for member in members])
    return data["createGroupRoom"]


async def respond(server: ServerProcess, account: Account, invitation_id: str, accept: bool) -> Any:
    data = await as_user(server, account, RESPOND_INVITATION, i=invitation_id, a=accept)
    return data["respondToRoomInvitation"]


def member_ids(room: dict[str, Any]) -> set[str]:
    return {member["id"] for member in room["members"]}


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_stranger_is_invited_reads_nothing_and_joins_by_accepting(
    any_server: ServerProcess, subprotocol: str
) -> None:
    alice, friend, stranger = [await sign_up(any_server) for _ in range(3)]
    await befriend_all(any_server, alice, [friend])
    room = await create_group(any_server, alice, [friend, stranger])
    assert member_ids(room) == {alice.id, friend.id}  # the friend at once, not the stranger
    await send(any_server, alice, room["id"], "before you came")

    (invitation,) = await invitations(any_server, stranger)
    assert invitation["inviter"]["id"] == alice.id
    # What an invitation shows of the room: its title and members, no message.
    assert invitation["room"] == {"id": room["id"], "title": "Team", "memberCount": 2, "lastSeq": 0}
    async with http_session(any_server, stranger.token) as session:
        for query, variables in (
            (ROOM, {"r": room["id"]}),
            (HISTORY, {"r": room["id"]}),
            (INVITE, {"r": room["id"], "u": [stranger.id]}),
        ):
            assert await error_code(session, query, **variables) == "FORBIDDEN"
    rooms = (await as_user(any_server, stranger, ROOMS))["rooms"]["edges"]
    assert rooms == []

    async with ws_session(any_server, subprotocol, stranger.token) as socket:
        assert await error_code(socket, MESSAGE_ADDED, r=room["id"], after=0) == "FORBIDDEN"
        async with subscribed(any_server, socket, ROOM_ADDED) as added:
            joined = await respond(any_server, stranger, invitation["id"], accept=True)
            assert (await added.next())["roomAdded"]["id"] == room["id"]
    assert member_ids(joined) == {alice.id, friend.id, stranger.id}
    texts = (await as_user(any_server, stranger, HISTORY, r=room["id"]))["messages"]["edges"]
    assert [edge["node"]["text"] for edge in texts] == ["before you came"]
    assert await invitations(any_server, stranger) == []
    async with http_session(any_server, stranger.token) as session:  # accepting twice
        again = await error_code(session, RESPOND_INVITATION, i=invitation["id"], a=True)
        assert again == "NOT_FOUND"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_accepting_on_one_instance_is_a_members_change_on_the_other(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob, dave = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, [bob])
    # Alice's friend, not bob's: bob's invitation of dave is an invitation.
    await befriend_all(server_a, alice, [dave])
    invited = (await as_user(server_b, bob, INVITE, r=room_id, u=[dave.id]))["inviteMembers"]
    assert member_ids(invited) == {alice.id, bob.id}
    (invitation,) = await invitations(server_b, dave)
    assert (invitation["room"]["id"], invitation["inviter"]["id"]) == (room_id, bob.id)
    async with (
        ws_session(server_a, subprotocol, alice.token) as socket,
        subscribed(server_a, socket, ROOM_ACTIVITY, r=room_id) as watching,
    ):
        await respond(server_b, dave, invitation["id"], accept=True)
        await members_now(watching, alice, bob, dave)
    # A friend of the inviter is added at once, as before.
    carol = await sign_up(server_a)
    await befriend_all(server_a, bob, [carol])
    invited = (await as_user(server_a, bob, INVITE, r=room_id, u=[carol.id]))["inviteMembers"]
    assert member_ids(invited) == {alice.id, bob.id, dave.id, carol.id}
    assert await invitations(server_a, carol) == []


async def test_declining_holds_the_inviter_back_but_not_other_members(
    any_server: ServerProcess,
) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob])
    await as_user(any_server, alice, INVITE, r=room_id, u=[carol.id])
    (invitation,) = await invitations(any_server, carol)
    assert await respond(any_server, carol, invitation["id"], accept=False) is None
    assert await invitations(any_server, carol) == []
    members = (await as_user(any_server, alice, ROOM, r=room_id))["room"]["members"]
    assert carol.id not in {member["id"] for member in members}

    async with http_session(any_server, alice.token) as session:
        # Neither to this room nor to a new one: the cooldown is the pair's.
        assert await error_code(session, INVITE, r=room_id, u=[carol.id]) == "RATE_LIMITED"
        assert await error_code(session, CREATE_GROUP, t="again", m=[carol.id]) == "RATE_LIMITED"
    rooms = (await as_user(any_server, alice, ROOMS))["rooms"]["edges"]
    assert [edge["node"]["id"] for edge in rooms] == [room_id]  # the refused group was not made
    assert await invitations(any_server, carol) == []
    # Another member may still invite her.
    await as_user(any_server, bob, INVITE, r=room_id, u=[carol.id])
    (from_bob,) = await invitations(any_server, carol)
    assert from_bob["inviter"]["id"] == bob.id
    async with http_session(any_server, carol.token) as session:  # declining twice
        assert await error_code(session, RESPOND_INVITATION, i=invitation["id"], a=False) == (
            "NOT_FOUND"
        )


async def test_another_users_invitation_is_not_found_and_a_bad_id_is_bad_input(
    any_server: ServerProcess,
) -> None:
    alice, carol, eve = [await sign_up(any_server) for _ in range(3)]
    room = await create_group(any_server, alice, [carol])
    (invitation,) = await invitations(any_server, carol)
    async with http_session(any_server, eve.token) as session:
        for accept in (True, False):
            code = await error_code(session, RESPOND_INVITATION, i=invitation["id"], a=accept)
            assert code == "NOT_FOUND"
        assert await error_code(session, RESPOND_INVITATION, i=UNKNOWN_ID, a=True) == "NOT_FOUND"
        assert await error_code(session, RESPOND_INVITATION, i="nope", a=True) == "BAD_USER_INPUT"
        assert await error_code(session, RESPOND_INVITATION, i=invitation["id"], a="yes") == (
            "BAD_USER_INPUT"
        )
        assert await error_code(session, ROOM, r=room["id"]) == "FORBIDDEN"
    assert await invitations(any_server, eve) == []
    assert [item["id"] for item in await invitations(any_server, carol)] == [invitation["id"]]
    async with http_session(any_server) as session:
        assert await error_code(session, "{ roomInvitations { id } }") == "UNAUTHENTICATED"


async def test_a_blocked_inviter_cannot_invite_and_their_invitations_go(
    any_server: ServerProcess,
) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob])
    await as_user(any_server, alice, INVITE, r=room_id, u=[carol.id])
    assert len(await invitations(any_server, carol)) == 1
    await as_user(any_server, carol, BLOCK, u=alice.id)
    assert await invitations(any_server, carol) == []  # the blocked user's invitation went
    # Refused as every other reach of a blocked user, never telling them why.
    assert_forbidden_quietly(await refusal(any_server, alice, INVITE, r=room_id, u=[carol.id]))
    assert_forbidden_quietly(await refusal(any_server, alice, CREATE_GROUP, t="g", m=[carol.id]))
    # Unblocked, the inviter is still held back for the cooldown.
    await as_user(any_server, carol, UNBLOCK, u=alice.id)
    error = await refusal(any_server, alice, INVITE, r=room_id, u=[carol.id])
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert await invitations(any_server, carol) == []
    # A block by the inviter's side is no refusal of the invitee's.
    await as_user(any_server, bob, INVITE, r=room_id, u=[carol.id])
    assert len(await invitations(any_server, carol)) == 1


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def short_lived() -> AsyncIterator[ServerProcess]:
    """An embedded server whose invitations die quickly and whose inviters may invite
    only a few users."""
    server = ServerProcess(
        "short-invitations",
        {
            "PLOP_ROOM_INVITATION_TTL_SECONDS": str(SHORT_TTL_SECONDS),
            "PLOP_ROOM_INVITATION_LIMIT": str(INVITATION_BUDGET),
        },
    )
    await server.start()
    yield server
    await server.stop()


async def test_an_expired_invitation_is_not_listed_and_cannot_be_accepted(
    short_lived: ServerProcess,
) -> None:
    server = short_lived
    alice, carol = await sign_up(server), await sign_up(server)
    room = await create_group(server, alice, [carol])
    (dead,) = await invitations(server, carol)
    # The server's clock decides: the list is asked until it drops the invitation.
    async with http_session(server, carol.token) as session:
        await until_no_invitations(session)
        assert await error_code(session, RESPOND_INVITATION, i=dead["id"], a=True) == "NOT_FOUND"
    assert (await as_user(server, alice, ROOM, r=room["id"]))["room"]["members"] == [
        {"id": alice.id}
    ]
    # Inviting again makes a live one, which joins.
    await as_user(server, alice, INVITE, r=room["id"], u=[carol.id])
    (fresh,) = await invitations(server, carol)
    joined = await respond(server, carol, fresh["id"], accept=True)
    assert member_ids(joined) == {alice.id, carol.id}


async def until_no_invitations(session: Any) -> None:
    async with asyncio.timeout(SHORT_TTL_SECONDS * 10):
        # Another process's clock: there is no event to await for a time passing.
        while (await call(session, "{ roomInvitations { id } }"))["roomInvitations"]:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def test_invitations_past_the_budget_are_refused_and_store_nothing(
    short_lived: ServerProcess,
) -> None:
    server = short_lived
    alice, *strangers = [await sign_up(server) for _ in range(INVITATION_BUDGET + 2)]
    room = await create_group(server, alice, strangers[:INVITATION_BUDGET])
    async with http_session(server, alice.token) as session:
        code = await error_code(session, INVITE, r=room["id"], u=[strangers[-1].id])
        assert code == "RATE_LIMITED"
        assert await error_code(session, CREATE_GROUP, t="t", m=[strangers[-2].id]) == (
            "RATE_LIMITED"
        )
    for invited in strangers[:INVITATION_BUDGET]:
        assert len(await invitations(server, invited)) == 1
    for refused in strangers[INVITATION_BUDGET:]:
        assert await invitations(server, refused) == []
    # Friends cost nothing of it: they are added.
    friend = await sign_up(server)
    await befriend_all(server, alice, [friend])
    added = (await as_user(server, alice, INVITE, r=room["id"], u=[friend.id]))["inviteMembers"]
    assert friend.id in member_ids(added)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_the_invitees_room_list_feed_shows_the_room_only_once_they_accepted(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, stranger = await sign_up(server_a), await sign_up(server_a)
    direct = await direct_room(server_a, alice, stranger)
    room = await create_group(server_a, alice, [stranger])
    async with (
        ws_session(server_b, subprotocol, stranger.token) as socket,
        subscribed(server_b, socket, ROOM_UPDATED) as feed,
    ):
        await send(server_a, alice, room["id"], "not for you yet")
        await send(server_a, alice, direct, "control")
        # The control is the first the feed shows: the group's message, sent before
        # it, is not the stranger's to see.
        before = await feed.next()
        assert (before["roomUpdated"]["id"], before["roomUpdated"]["lastMessage"]["text"]) == (
            direct,
            "control",
        )
        (invitation,) = await invitations(server_b, stranger)
        await respond(server_b, stranger, invitation["id"], accept=True)
        await send(server_a, alice, room["id"], "now for you")
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            while (shown := (await feed.next())["roomUpdated"])["id"] != room["id"] or (
                shown["lastMessage"] or {}
            ).get("text") != "now for you":
                assert shown["id"] == room["id"], f"unexpected {shown!r}"
