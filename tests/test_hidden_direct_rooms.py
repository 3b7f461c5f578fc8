"""Hidden DMs: leaveRoom on a DIRECT room takes it out of the viewer's room list until
a new message arrives in it. The viewer stays a member (history, live messages and
pushes stay theirs: tests/test_muting.py), and the other user sees no change."""

from __future__ import annotations

import pytest

from tests.support.chat import (
    HISTORY,
    LEAVE,
    MESSAGE_ADDED,
    ROOM,
    ROOMS,
    as_user,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import SUBPROTOCOLS, Account, sign_up, subscribed, ws_session
from tests.support.server import ServerProcess


async def listed(server: ServerProcess, account: Account) -> list[str]:
    """The ids of the user's rooms, most recent first, paged one room at a time."""
    ids: list[str] = []
    after: str | None = None
    while True:
        page = (await as_user(server, account, ROOMS, first=1, after=after))["rooms"]
        ids += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return ids
        after = page["pageInfo"]["endCursor"]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_hidden_direct_room_returns_with_a_new_message_and_history_stays(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob, carol = [await sign_up(server_a) for _ in range(3)]
    direct = await direct_room(server_a, alice, bob)
    await send(server_a, bob, direct, "old news")
    group = await group_room(server_a, alice, [carol])
    assert await listed(server_a, alice) == [group, direct]

    assert (await as_user(server_a, alice, LEAVE, r=direct))["leaveRoom"] is True
    assert await listed(server_a, alice) == [group]
    assert await listed(server_b, bob) == [direct]  # the other member sees no change
    # Still a member: the room, its history and its live messages are hers.
    room = (await as_user(server_b, alice, ROOM, r=direct))["room"]
    assert {member["id"] for member in room["members"]} == {alice.id, bob.id}
    history = (await as_user(server_b, alice, HISTORY, r=direct))["messages"]["edges"]
    assert [edge["node"]["text"] for edge in history] == ["old news"]
    async with (
        ws_session(server_b, subprotocol, alice.token) as socket,
        subscribed(server_b, socket, MESSAGE_ADDED, r=direct) as live,
    ):
        await send(server_a, bob, direct, "are you there?")
        assert (await live.next())["messageAdded"]["text"] == "are you there?"
    # The new message brought it back, on top, on every instance.
    assert await listed(server_b, alice) == [direct, group]
    assert await listed(server_a, alice) == [direct, group]


async def test_paging_skips_hidden_rooms_and_opening_one_again_shows_it(
    any_server: ServerProcess,
) -> None:
    me = await sign_up(any_server)
    others = [await sign_up(any_server) for _ in range(5)]
    rooms = [await direct_room(any_server, me, other) for other in others]
    for room_id, other in zip(rooms, others, strict=True):
        await send(any_server, other, room_id, "hi")
    newest_first = rooms[::-1]
    for hidden in (rooms[1], rooms[3]):
        await as_user(any_server, me, LEAVE, r=hidden)
    assert await listed(any_server, me) == [
        room for room in newest_first if room not in (rooms[1], rooms[3])
    ]
    # A page larger than the list ends it too.
    page = (await as_user(any_server, me, ROOMS, first=20))["rooms"]
    assert len(page["edges"]) == 3 and page["pageInfo"]["hasNextPage"] is False
    # createDirectRoom opens the hidden room again: it is back, in its place.
    assert await direct_room(any_server, me, others[1]) == rooms[1]
    assert await listed(any_server, me) == [room for room in newest_first if room != rooms[3]]
    # Hiding twice changes nothing; the other user still lists it.
    await as_user(any_server, me, LEAVE, r=rooms[3])
    assert rooms[3] in await listed(any_server, others[3])
