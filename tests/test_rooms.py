"""Rooms: direct and group rooms, invites, leaving, the room list and authorization."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.chat import (
    CREATE_DIRECT,
    CREATE_GROUP,
    HISTORY,
    INVITE,
    LEAVE,
    MESSAGE_ADDED,
    ROOM,
    ROOM_ADDED,
    ROOMS,
    SEND,
    as_user,
    befriend_all,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.server import ServerProcess

UNKNOWN_ID = "0" * 24


async def test_direct_room_is_one_per_pair_and_idempotent(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    first = await direct_room(any_server, alice, bob)
    assert await direct_room(any_server, alice, bob) == first
    assert await direct_room(any_server, bob, alice) == first
    room = (await as_user(any_server, bob, ROOM, r=first))["room"]
    assert room["kind"] == "DIRECT" and room["title"] is None
    assert {m["id"] for m in room["members"]} == {alice.id, bob.id}
    assert room["lastSeq"] == 0 and room["lastMessage"] is None


async def test_concurrent_direct_room_calls_make_one_room(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    ids = await asyncio.gather(
        *(direct_room(any_server, alice, bob) for _ in range(5)),
        *(direct_room(any_server, bob, alice) for _ in range(5)),
    )
    assert len(set(ids)) == 1
    rooms = (await as_user(any_server, alice, ROOMS, first=20))["rooms"]["edges"]
    assert [edge["node"]["id"] for edge in rooms] == [ids[0]]


async def test_direct_room_rules(any_server: ServerProcess) -> None:
    alice = await sign_up(any_server)
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, CREATE_DIRECT, u=alice.id) == "BAD_USER_INPUT"
        assert await error_code(session, CREATE_DIRECT, u=UNKNOWN_ID) == "NOT_FOUND"
        assert await error_code(session, CREATE_DIRECT, u="nope") == "BAD_USER_INPUT"


async def test_group_room_includes_creator_and_dedupes_members(any_server: ServerProcess) -> None:
    alice = await sign_up(any_server)
    bob = await sign_up(any_server)
    carol = await sign_up(any_server)
    await befriend_all(any_server, alice, [bob, carol])  # friends are added, not invited
    data = await as_user(
        any_server, alice, CREATE_GROUP, t="  Team  ", m=[bob.id, carol.id, bob.id, alice.id]
    )
    room = data["createGroupRoom"]
    assert room["kind"] == "GROUP" and room["title"] == "Team"
    assert sorted(m["id"] for m in room["members"]) == sorted([alice.id, bob.id, carol.id])


@pytest.mark.parametrize("title", ["", "   ", "x" * 101])
async def test_group_title_must_be_1_to_100_characters(
    any_server: ServerProcess, title: str
) -> None:
    alice = await sign_up(any_server)
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, CREATE_GROUP, t=title, m=[]) == "BAD_USER_INPUT"
    assert (await as_user(any_server, alice, ROOMS))["rooms"]["edges"] == []


async def test_group_with_unknown_member_is_not_found(any_server: ServerProcess) -> None:
    alice = await sign_up(any_server)
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, CREATE_GROUP, t="t", m=[UNKNOWN_ID]) == "NOT_FOUND"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_rooms_server() -> AsyncIterator[ServerProcess]:
    """An embedded server whose groups hold at most 3 members."""
    server = ServerProcess("small-rooms", {"PLOP_MAX_GROUP_MEMBERS": "3"})
    await server.start()
    yield server
    await server.stop()


async def test_member_cap_applies_to_create_and_invite(small_rooms_server: ServerProcess) -> None:
    server = small_rooms_server
    alice, bob, carol, dan = [await sign_up(server) for _ in range(4)]
    async with http_session(server, alice.token) as session:
        assert (
            await error_code(session, CREATE_GROUP, t="t", m=[bob.id, carol.id, dan.id])
            == "BAD_USER_INPUT"
        )
    room_id = await group_room(server, alice, [bob, carol])
    async with http_session(server, alice.token) as session:
        assert await error_code(session, INVITE, r=room_id, u=[dan.id]) == "BAD_USER_INPUT"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_invite_by_any_member_and_invitee_gets_room_added(
    any_server: ServerProcess, subprotocol: str
) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob])
    await befriend_all(any_server, bob, [carol])  # a friend of the inviter joins at once
    async with (
        ws_session(any_server, subprotocol, carol.token) as session,
        subscribed(any_server, session, ROOM_ADDED) as added,
    ):
        invited = (await as_user(any_server, bob, INVITE, r=room_id, u=[carol.id]))["inviteMembers"]
        event = await added.next()
    assert event["roomAdded"]["id"] == room_id
    assert {m["id"] for m in invited["members"]} == {alice.id, bob.id, carol.id}


async def test_inviting_a_member_again_changes_nothing(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await group_room(any_server, alice, [bob])
    again = (await as_user(any_server, alice, INVITE, r=room_id, u=[bob.id, alice.id]))[
        "inviteMembers"
    ]
    assert sorted(m["id"] for m in again["members"]) == sorted([alice.id, bob.id])


async def test_invite_to_direct_room_is_bad_user_input(any_server: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await direct_room(any_server, alice, bob)
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, INVITE, r=room_id, u=[carol.id]) == "BAD_USER_INPUT"


async def test_non_member_is_forbidden_everywhere(any_server: ServerProcess) -> None:
    alice, bob, eve = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob])
    await send(any_server, alice, room_id, "secret")
    async with http_session(any_server, eve.token) as session:
        assert await error_code(session, ROOM, r=room_id) == "FORBIDDEN"
        assert await error_code(session, HISTORY, r=room_id) == "FORBIDDEN"
        assert await error_code(session, SEND, r=room_id, t="hi") == "FORBIDDEN"
        assert await error_code(session, INVITE, r=room_id, u=[eve.id]) == "FORBIDDEN"
        assert await error_code(session, LEAVE, r=room_id) == "FORBIDDEN"
    for subprotocol in SUBPROTOCOLS:
        async with ws_session(any_server, subprotocol, eve.token) as session:
            assert await error_code(session, MESSAGE_ADDED, r=room_id, after=0) == "FORBIDDEN"


async def test_unknown_room_is_not_found(any_server: ServerProcess) -> None:
    alice = await sign_up(any_server)
    async with http_session(any_server, alice.token) as session:
        for query, variables in (
            (ROOM, {"r": UNKNOWN_ID}),
            (HISTORY, {"r": UNKNOWN_ID}),
            (SEND, {"r": UNKNOWN_ID, "t": "hi"}),
        ):
            assert await error_code(session, query, **variables) == "NOT_FOUND"
        assert await error_code(session, ROOM, r="bad-id") == "BAD_USER_INPUT"


async def test_member_who_left_no_longer_reads_sends_or_receives(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await group_room(any_server, alice, [bob])
    async with ws_session(any_server, SUBPROTOCOLS[0], bob.token) as session:
        async with subscribed(any_server, session, MESSAGE_ADDED, r=room_id) as live:
            await send(any_server, alice, room_id, "before")
            assert (await live.next())["messageAdded"]["text"] == "before"
            assert (await as_user(any_server, bob, LEAVE, r=room_id))["leaveRoom"] is True
            with pytest.raises(Exception) as ended:
                await live.next()
            assert "FORBIDDEN" in repr(ended.value) or "no longer a member" in repr(ended.value)
        await send(any_server, alice, room_id, "after")
        assert await error_code(session, MESSAGE_ADDED, r=room_id, after=0) == "FORBIDDEN"
    async with http_session(any_server, bob.token) as session:
        assert await error_code(session, HISTORY, r=room_id) == "FORBIDDEN"
        assert await error_code(session, SEND, r=room_id, t="x") == "FORBIDDEN"
    room = (await as_user(any_server, alice, ROOM, r=room_id))["room"]
    assert [m["id"] for m in room["members"]] == [alice.id]


async def test_rooms_are_listed_by_recent_activity_with_stable_cursors(
    any_server: ServerProcess,
) -> None:
    me = await sign_up(any_server)
    others = [await sign_up(any_server) for _ in range(5)]
    created = [await direct_room(any_server, me, other) for other in others]
    listed = (await as_user(any_server, me, ROOMS, first=2))["rooms"]
    assert [e["node"]["id"] for e in listed["edges"]] == created[::-1][:2]
    assert listed["pageInfo"]["hasNextPage"] is True
    # New activity moves the oldest room to the top; the cursor still pages on.
    await send(any_server, me, created[0], "bump")
    rest = (await as_user(any_server, me, ROOMS, first=10, after=listed["pageInfo"]["endCursor"]))[
        "rooms"
    ]
    # The bumped room now sits before the cursor; the rest follow in order, once.
    assert [e["node"]["id"] for e in rest["edges"]] == created[::-1][2:4]
    assert rest["pageInfo"]["hasNextPage"] is False
    top = (await as_user(any_server, me, ROOMS, first=1))["rooms"]["edges"][0]["node"]
    assert top["id"] == created[0]
    assert top["lastSeq"] == 1 and top["lastMessage"]["text"] == "bump"


async def test_bad_room_cursor_and_page_size_are_bad_user_input(any_server: ServerProcess) -> None:
    me = await sign_up(any_server)
    async with http_session(any_server, me.token) as session:
        assert await error_code(session, ROOMS, after="not-a-cursor") == "BAD_USER_INPUT"
        assert await error_code(session, ROOMS, first=101) == "BAD_USER_INPUT"
        assert await error_code(session, ROOMS, first=-1) == "BAD_USER_INPUT"
