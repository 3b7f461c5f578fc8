"""What one request may cost: member pages, the static cost limit, and round trips
that do not grow with the number of rooms a page shows."""

from __future__ import annotations

import httpx

from tests.support.chat import ROOMS, as_user, group_room
from tests.support.clients import Account, error_code, http_session, sign_up
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
