"""What one request may cost: member pages, the static cost limit, and round trips
that do not grow with the number of rooms a page shows."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from graphql import get_introspection_query, parse

from schema.cost import query_cost
from schema.root import build_schema
from tests.support.chat import (
    CREATE_GROUP,
    ROOMS,
    SEND,
    accept_invitations,
    as_user,
    befriend,
    befriend_all,
    group_room,
)
from tests.support.clients import Account, call, error_code, http_session, sign_up
from tests.support.server import ServerProcess

MEMBERS = """
query($r: ID!, $first: Int) {
  room(id: $r) { memberCount members(first: $first) { id } all: members { id } }
}
"""
INVITE_IDS = "mutation($r: ID!, $u: [ID!]!) { inviteMembers(roomId: $r, userIds: $u) { id } }"
PRESENCE_PAGE = """
query($first: Int) {
  rooms(first: $first) { edges { node { members { presence { status } } } } }
}
"""
LIMIT = 5_000


def alias_bomb(count: int = 30) -> str:
    """``count`` aliases of the biggest room page with every member's presence."""
    rooms = "rooms(first: 100) { edges { node { members { presence { status } } } } }"
    return "{ " + " ".join(f"a{i}: {rooms}" for i in range(count)) + " }"


async def test_members_are_paged_oldest_first_and_counted(any_server: ServerProcess) -> None:
    owner = await sign_up(any_server)
    first_members: list[Account] = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, owner, first_members)
    late = await sign_up(any_server)
    await befriend_all(any_server, owner, [late])  # a friend is added at once
    await as_user(any_server, owner, INVITE_IDS, r=room_id, u=[late.id])
    joined = [owner.id, *(member.id for member in first_members), late.id]

    room = (await as_user(any_server, owner, MEMBERS, r=room_id, first=2))["room"]
    assert room["memberCount"] == 5
    assert [member["id"] for member in room["members"]] == joined[:2]
    assert [member["id"] for member in room["all"]] == joined  # the default page: 100

    async with http_session(any_server, owner.token) as session:
        for first in (0, -1, 1_001):
            assert await error_code(session, MEMBERS, r=room_id, first=first) == "BAD_USER_INPUT"


async def test_an_alias_bomb_is_refused_naming_its_cost_and_the_limit(
    any_server: ServerProcess,
) -> None:
    viewer = await sign_up(any_server)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            any_server.http_url,
            json={"query": alias_bomb()},
            headers={"Authorization": f"Bearer {viewer.token}"},
        )
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    cost = 30 * (1 + 100 * (1 + 1 + 100 * (1 + 1)))
    assert error["extensions"]["cost"] == cost
    assert f"{cost}" in error["message"] and f"{LIMIT}" in error["message"]
    assert response.json().get("data") is None


async def test_the_cost_is_counted_before_anything_runs(any_server: ServerProcess) -> None:
    viewer, other = await sign_up(any_server), await sign_up(any_server)
    create = " ".join(
        f'g{i}: createGroupRoom(title: "g", memberIds: ["{other.id}"]) '
        "{ members { presence { status } } }"
        for i in range(25)
    )
    async with http_session(any_server, viewer.token) as session:
        assert await error_code(session, f"mutation {{ {create} }}") == "BAD_USER_INPUT"
    assert (await as_user(any_server, viewer, ROOMS))["rooms"]["edges"] == []


async def test_page_sizes_given_as_variables_count(any_server: ServerProcess) -> None:
    viewer = await sign_up(any_server)
    # 1 + 20 * (2 + 100 * 2) = 4,041: under the limit; with 40 rooms a page, over it.
    assert (await as_user(any_server, viewer, PRESENCE_PAGE, first=20))["rooms"]["edges"] == []
    async with http_session(any_server, viewer.token) as session:
        assert await error_code(session, PRESENCE_PAGE, first=40) == "BAD_USER_INPUT"


ROOM_PAGE = """
query($first: Int) {
  rooms(first: $first) {
    edges { node {
      id lastSeq lastReadSeq unreadCount memberCount
      members(first: 3) { id presence { status } }
      lastMessage { seq text sender { id username } }
    } }
  }
}
"""


async def round_trips(server: ServerProcess, field: str) -> dict[str, float]:
    """The server's round trips so far made by operations on this root field."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{server.base_url}/metrics")).text
    counts = {"mongo": 0.0, "redis": 0.0}
    for backend in counts:
        sample = re.search(
            rf'^plop_backend_commands_total\{{backend="{backend}",field="{field}"\}} (\S+)$',
            text,
            re.MULTILINE,
        )
        counts[backend] = float(sample.group(1)) if sample else 0.0
    return counts


async def page_round_trips(server: ServerProcess, viewer: Account, first: int) -> dict[str, Any]:
    # The viewer's document is kept for a while (services/accounts.py): read it just
    # before, so that a slow run does not count its expiry in one page and not another.
    await as_user(server, viewer, "{ me { id } }")
    before = await round_trips(server, "rooms")
    page = (await as_user(server, viewer, ROOM_PAGE, first=first))["rooms"]["edges"]
    after = await round_trips(server, "rooms")
    assert len(page) == first
    return {"page": page, **{backend: after[backend] - before[backend] for backend in before}}


async def test_a_page_of_rooms_takes_the_same_round_trips_for_5_or_40_rooms(
    server_a: ServerProcess,
) -> None:
    viewer, friend, stranger = [await sign_up(server_a) for _ in range(3)]
    await befriend(server_a, viewer, friend)
    async with http_session(server_a, viewer.token) as session:
        created = await asyncio.gather(
            *(call(session, CREATE_GROUP, t=f"r{i}", m=[friend.id, stranger.id]) for i in range(40))
        )
    rooms = [each["createGroupRoom"]["id"] for each in created]
    # Not the viewer's friend: the stranger was invited, and joins by accepting.
    assert sorted(await accept_invitations(server_a, stranger)) == sorted(rooms)
    async with http_session(server_a, stranger.token) as session:
        await asyncio.gather(
            *(call(session, SEND, r=room_id, t=f"in {room_id}", c=None) for room_id in rooms)
        )

    small, large = [await page_round_trips(server_a, viewer, first) for first in (5, 40)]
    assert (large["mongo"], large["redis"]) == (small["mongo"], small["redis"])
    assert 0 < large["mongo"] <= 12 and 0 < large["redis"] <= 4
    for edge in large["page"]:
        room = edge["node"]
        assert (room["lastSeq"], room["lastReadSeq"], room["unreadCount"]) == (1, 0, 1)
        assert room["memberCount"] == 3
        assert room["lastMessage"]["text"] == f"in {room['id']}"
        assert room["lastMessage"]["sender"]["username"] == stranger.username
        presence = {member["id"]: member["presence"] for member in room["members"]}
        assert presence[viewer.id] is not None and presence[friend.id] is not None
        assert presence[stranger.id] is None  # not a friend: not shown


def test_cost_follows_fragments_and_variable_defaults_and_skips_introspection() -> None:
    schema = build_schema()._schema
    with_fragments = parse(
        """
        query($n: Int = 5) { rooms(first: 10) { edges { node { ...RoomMembers } } } }
        fragment RoomMembers on Room { members(first: $n) { ... on User { presence { status } } } }
        """
    )
    # rooms 1 + edges 10 * (1 + node 1 + members 5 * (1 + presence 1))
    assert query_cost(schema, with_fragments) == 1 + 10 * (1 + 1 + 5 * 2)
    assert query_cost(schema, with_fragments, variables={"n": 50}) == 1 + 10 * (1 + 1 + 50 * 2)
    assert query_cost(schema, parse(get_introspection_query())) == 0
