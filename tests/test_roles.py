"""Group roles, driven as users drive them: the owner, admins and members of a group.

- createGroupRoom makes the creator OWNER; Room.viewerRole and Room.memberships say
  who is what (a DIRECT room: MEMBER for both), oldest member first, Relay-paged.
- The owner and admins rename the group and remove members (an admin removes members
  only, nobody removes the owner); the owner alone gives roles and hands the group
  over; when the owner leaves, the oldest admin (else the oldest member) owns it.
- Every refusal is tried as a member and as an admin, with ids of other rooms, of
  non-members, and ill-typed ids.
- Each change reaches roomActivity as MembersChanged on every instance; a removed
  member's subscriptions end FORBIDDEN on every instance, on both subprotocols, and
  they can no longer read, send or be pushed to.
- A group stored before roles reads its oldest member as owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from bson import ObjectId
from gql.transport.exceptions import TransportQueryError
from pymongo import AsyncMongoClient

from tests.support.chat import (
    HISTORY,
    INVITE,
    LEAVE,
    MESSAGE_ADDED,
    REGISTER_DEVICE,
    ROOM_UPDATED,
    SEND,
    as_user,
    befriend_all,
    direct_room,
    group_room,
    send,
)
from tests.support.clients import (
    SUBPROTOCOLS,
    Account,
    Subscription,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.push_receiver import PushReceiver, running_push_receiver, webhook_pusher
from tests.support.server import ServerProcess
from tests.test_limits import assert_limited, post

UNKNOWN_ID = "0" * 24
MEMBERSHIPS = """
query($r: ID!, $first: Int, $after: String) {
  room(id: $r) {
    viewerRole
    memberships(first: $first, after: $after) {
      edges { cursor node { user { id } role joinedAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""
ROLE = "query($r: ID!) { room(id: $r) { viewerRole title } }"
RENAME = "mutation($r: ID!, $t: String!) { updateRoom(roomId: $r, title: $t) { id title } }"
REMOVE = """
mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id members { id } } }
"""
SET_ROLE = """
mutation($r: ID!, $u: ID!, $role: RoomRole!) {
  setMemberRole(roomId: $r, userId: $u, role: $role) {
    id viewerRole memberships { edges { node { user { id } role } } }
  }
}
"""
ROOM_ACTIVITY = """
subscription($r: ID!) {
  roomActivity(roomId: $r) {
    __typename
    ... on MembersChanged {
      room { id title viewerRole memberCount memberships { edges { node { user { id } role } } } }
    }
  }
}
"""


async def roles(server: ServerProcess, viewer: Account, room_id: str) -> dict[str, str]:
    """Each member's role as the viewer reads it, by user id, oldest member first."""
    room = (await as_user(server, viewer, MEMBERSHIPS, r=room_id, first=1000))["room"]
    edges = room["memberships"]["edges"]
    return {edge["node"]["user"]["id"]: edge["node"]["role"] for edge in edges}


async def viewer_role(server: ServerProcess, viewer: Account, room_id: str) -> str:
    role: str = (await as_user(server, viewer, ROLE, r=room_id))["room"]["viewerRole"]
    return role


async def refused(server: ServerProcess, viewer: Account, query: str, **variables: Any) -> str:
    async with http_session(server, viewer.token) as session:
        return await error_code(session, query, **variables)


async def make(
    server: ServerProcess, owner: Account, room_id: str, user: Account, role: str
) -> None:
    await as_user(server, owner, SET_ROLE, r=room_id, u=user.id, role=role)


async def ends_forbidden(subscription: Subscription) -> None:
    """The subscription's next result is its end, FORBIDDEN."""
    with pytest.raises(Exception) as ended:
        await subscription.next()
    assert "FORBIDDEN" in repr(ended.value) or "no longer a member" in repr(ended.value)


# --- who is what ----------------------------------------------------------------------


async def test_the_creator_owns_a_group_and_everyone_else_is_a_member(
    any_server: ServerProcess,
) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob, carol])
    room = (await as_user(any_server, bob, MEMBERSHIPS, r=room_id))["room"]
    assert room["viewerRole"] == "MEMBER"
    nodes = [edge["node"] for edge in room["memberships"]["edges"]]
    assert [(node["user"]["id"], node["role"]) for node in nodes] == [
        (alice.id, "OWNER"),
        (bob.id, "MEMBER"),
        (carol.id, "MEMBER"),
    ]
    assert all(node["joinedAt"].endswith("+00:00") for node in nodes)
    assert await viewer_role(any_server, alice, room_id) == "OWNER"

    dm = await direct_room(any_server, alice, bob)
    assert await viewer_role(any_server, alice, dm) == "MEMBER"
    assert set((await roles(any_server, bob, dm)).values()) == {"MEMBER"}


async def test_memberships_page_oldest_first_and_go_on_after_a_member_who_left(
    any_server: ServerProcess,
) -> None:
    alice, bob, carol, dan = [await sign_up(any_server) for _ in range(4)]
    await befriend_all(any_server, alice, [carol, dan])  # added at once, not invited
    room_id = await group_room(any_server, alice, [bob])
    # Added one by one: each joins after the one before.
    await as_user(any_server, alice, INVITE, r=room_id, u=[carol.id])
    await as_user(any_server, alice, INVITE, r=room_id, u=[dan.id])
    first = (await as_user(any_server, alice, MEMBERSHIPS, r=room_id, first=2))["room"]
    page = first["memberships"]
    assert [edge["node"]["user"]["id"] for edge in page["edges"]] == [alice.id, bob.id]
    assert page["pageInfo"]["hasNextPage"] and not page["pageInfo"]["hasPreviousPage"]
    joined = [edge["node"]["joinedAt"] for edge in page["edges"]]
    assert joined == sorted(joined)

    # Bob, whose cursor ends the first page, leaves: the next page goes on after him.
    await as_user(any_server, bob, LEAVE, r=room_id)
    after = page["pageInfo"]["endCursor"]
    rest = await as_user(any_server, alice, MEMBERSHIPS, r=room_id, first=5, after=after)
    rest_page = rest["room"]["memberships"]
    assert [edge["node"]["user"]["id"] for edge in rest_page["edges"]] == [carol.id, dan.id]
    assert rest_page["pageInfo"]["hasPreviousPage"] and not rest_page["pageInfo"]["hasNextPage"]

    empty = (await as_user(any_server, alice, MEMBERSHIPS, r=room_id, first=0))["room"]
    assert empty["memberships"]["edges"] == []
    for variables in ({"first": 1001}, {"first": -1}, {"after": "nope"}, {"after": UNKNOWN_ID}):
        code = await refused(any_server, alice, MEMBERSHIPS, r=room_id, **variables)
        assert code == "BAD_USER_INPUT", variables


# --- renaming ---------------------------------------------------------------------------


async def test_the_owner_and_admins_rename_a_group_and_members_cannot(
    any_server: ServerProcess,
) -> None:
    alice, bob, carol, eve = [await sign_up(any_server) for _ in range(4)]
    room_id = await group_room(any_server, alice, [bob, carol])
    assert (await as_user(any_server, alice, RENAME, r=room_id, t="  Plans  "))["updateRoom"] == {
        "id": room_id,
        "title": "Plans",
    }
    assert await refused(any_server, bob, RENAME, r=room_id, t="mine") == "FORBIDDEN"
    await make(any_server, alice, room_id, bob, "ADMIN")
    assert (await as_user(any_server, bob, RENAME, r=room_id, t="Ours"))["updateRoom"]["title"]
    assert (await as_user(any_server, carol, ROLE, r=room_id))["room"]["title"] == "Ours"
    assert await refused(any_server, carol, RENAME, r=room_id, t="mine") == "FORBIDDEN"

    # The rules of a title are createGroupRoom's.
    for title in ("", "   ", "x" * 101, "\u202eevil", "a\u200bb"):
        assert await refused(any_server, alice, RENAME, r=room_id, t=title) == "BAD_USER_INPUT"
    # Not a member, another room, no room, no id, a DIRECT room.
    assert await refused(any_server, eve, RENAME, r=room_id, t="taken") == "FORBIDDEN"
    other_room = await group_room(any_server, eve, [])
    assert await refused(any_server, bob, RENAME, r=other_room, t="taken") == "FORBIDDEN"
    assert await refused(any_server, alice, RENAME, r=UNKNOWN_ID, t="t") == "NOT_FOUND"
    assert await refused(any_server, alice, RENAME, r="not-an-id", t="t") == "BAD_USER_INPUT"
    dm = await direct_room(any_server, alice, bob)
    assert await refused(any_server, alice, RENAME, r=dm, t="t") == "BAD_USER_INPUT"
    assert (await as_user(any_server, alice, ROLE, r=room_id))["room"]["title"] == "Ours"


# --- removing ---------------------------------------------------------------------------


async def test_removal_rules_tried_as_a_member_and_as_an_admin(any_server: ServerProcess) -> None:
    owner, admin, other_admin, member, other_member, eve = [
        await sign_up(any_server) for _ in range(6)
    ]
    room_id = await group_room(
        any_server, owner, [admin, other_admin, member, other_member], title="rules"
    )
    await make(any_server, owner, room_id, admin, "ADMIN")
    await make(any_server, owner, room_id, other_admin, "ADMIN")

    # A member removes nobody.
    for target in (other_member, admin, owner):
        assert await refused(any_server, member, REMOVE, r=room_id, u=target.id) == "FORBIDDEN"
    # An admin removes neither another admin nor the owner.
    for target in (other_admin, owner):
        assert await refused(any_server, admin, REMOVE, r=room_id, u=target.id) == "FORBIDDEN"
    # Nobody removes themself (that is leaveRoom), nor someone who is not in the room.
    assert await refused(any_server, owner, REMOVE, r=room_id, u=owner.id) == "BAD_USER_INPUT"
    assert await refused(any_server, admin, REMOVE, r=room_id, u=admin.id) == "BAD_USER_INPUT"
    assert await refused(any_server, owner, REMOVE, r=room_id, u=eve.id) == "BAD_USER_INPUT"
    assert await refused(any_server, owner, REMOVE, r=room_id, u=UNKNOWN_ID) == "BAD_USER_INPUT"
    assert await refused(any_server, owner, REMOVE, r=room_id, u="nope") == "BAD_USER_INPUT"
    assert await refused(any_server, owner, REMOVE, r="nope", u=member.id) == "BAD_USER_INPUT"
    assert await refused(any_server, owner, REMOVE, r=UNKNOWN_ID, u=member.id) == "NOT_FOUND"
    # A stranger, and an owner of another room, remove nobody here.
    assert await refused(any_server, eve, REMOVE, r=room_id, u=member.id) == "FORBIDDEN"
    eves_room = await group_room(any_server, eve, [member])
    assert await refused(any_server, owner, REMOVE, r=eves_room, u=member.id) == "FORBIDDEN"
    assert await refused(any_server, admin, REMOVE, r=eves_room, u=member.id) == "FORBIDDEN"
    dm = await direct_room(any_server, owner, member)
    assert await refused(any_server, owner, REMOVE, r=dm, u=member.id) == "BAD_USER_INPUT"
    assert len(await roles(any_server, owner, room_id)) == 5

    # An admin removes a member; the owner removes an admin.
    removed = await as_user(any_server, admin, REMOVE, r=room_id, u=other_member.id)
    assert other_member.id not in {m["id"] for m in removed["removeMember"]["members"]}
    await as_user(any_server, owner, REMOVE, r=room_id, u=other_admin.id)
    assert await roles(any_server, owner, room_id) == {
        owner.id: "OWNER",
        admin.id: "ADMIN",
        member.id: "MEMBER",
    }
    for gone in (other_member, other_admin):
        async with http_session(any_server, gone.token) as session:
            assert await error_code(session, ROLE, r=room_id) == "FORBIDDEN"
            assert await error_code(session, HISTORY, r=room_id) == "FORBIDDEN"
            assert await error_code(session, SEND, r=room_id, t="still here?") == "FORBIDDEN"
            assert await error_code(session, REMOVE, r=room_id, u=member.id) == "FORBIDDEN"


# --- roles ----------------------------------------------------------------------------


async def test_only_the_owner_gives_roles_and_hands_the_group_over(
    any_server: ServerProcess,
) -> None:
    owner, admin, member, eve = [await sign_up(any_server) for _ in range(4)]
    room_id = await group_room(any_server, owner, [admin, member])
    await make(any_server, owner, room_id, admin, "ADMIN")
    for role in ("ADMIN", "MEMBER", "OWNER"):
        for viewer in (admin, member):  # tried as an admin and as a member
            code = await refused(any_server, viewer, SET_ROLE, r=room_id, u=member.id, role=role)
            assert code == "FORBIDDEN", (viewer, role)
        assert (
            await refused(any_server, admin, SET_ROLE, r=room_id, u=admin.id, role=role)
            == "FORBIDDEN"
        )
    for bad in ({"u": owner.id, "role": "MEMBER"}, {"u": eve.id, "role": "ADMIN"}):
        assert await refused(any_server, owner, SET_ROLE, r=room_id, **bad) == "BAD_USER_INPUT"
    assert (
        await refused(any_server, owner, SET_ROLE, r=room_id, u=member.id, role="KING")
        == "BAD_USER_INPUT"
    )
    assert (
        await refused(any_server, owner, SET_ROLE, r=room_id, u="x", role="ADMIN")
        == "BAD_USER_INPUT"
    )
    assert (
        await refused(any_server, eve, SET_ROLE, r=room_id, u=eve.id, role="OWNER") == "FORBIDDEN"
    )
    dm = await direct_room(any_server, owner, member)
    assert (
        await refused(any_server, owner, SET_ROLE, r=dm, u=member.id, role="ADMIN")
        == "BAD_USER_INPUT"
    )

    # An admin made a member again; a member made owner: the old owner is an admin.
    await make(any_server, owner, room_id, admin, "MEMBER")
    handed = await as_user(any_server, owner, SET_ROLE, r=room_id, u=member.id, role="OWNER")
    assert handed["setMemberRole"]["viewerRole"] == "ADMIN"
    assert await roles(any_server, owner, room_id) == {
        owner.id: "ADMIN",
        admin.id: "MEMBER",
        member.id: "OWNER",
    }
    # The old owner is an admin now: no more roles from them, and the new owner
    # cannot be removed by them.
    code = await refused(any_server, owner, SET_ROLE, r=room_id, u=admin.id, role="ADMIN")
    assert code == "FORBIDDEN"
    assert await refused(any_server, owner, REMOVE, r=room_id, u=member.id) == "FORBIDDEN"
    await make(any_server, member, room_id, owner, "MEMBER")
    assert await viewer_role(any_server, owner, room_id) == "MEMBER"


async def test_handovers_racing_on_two_instances_leave_exactly_one_owner(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    owner, *heirs = [await sign_up(server_a) for _ in range(5)]
    room_id = await group_room(server_a, owner, heirs)

    async def hand_over(server: ServerProcess, heir: Account) -> str:
        async with http_session(server, owner.token) as session:
            try:
                await call(session, SET_ROLE, r=room_id, u=heir.id, role="OWNER")
            except TransportQueryError as exc:
                code: str = (exc.errors or [{}])[0]["extensions"]["code"]
                return code
        return "OK"

    servers = (server_a, server_b)
    answers = await asyncio.gather(
        *(hand_over(servers[i % 2], heir) for i, heir in enumerate(heirs))
    )
    # The first handover made the owner an admin: every other one is the owner's no more.
    assert sorted(answers) == ["FORBIDDEN"] * (len(heirs) - 1) + ["OK"], answers
    heir = heirs[answers.index("OK")]
    expected = {owner.id: "ADMIN", **{each.id: "MEMBER" for each in heirs}, heir.id: "OWNER"}
    for server in servers:
        assert await roles(server, heirs[0], room_id) == expected


async def test_when_the_owner_leaves_the_oldest_admin_else_the_oldest_member_owns(
    any_server: ServerProcess,
) -> None:
    owner, oldest, admin, youngest = [await sign_up(any_server) for _ in range(4)]
    room_id = await group_room(any_server, owner, [oldest, admin, youngest])
    await make(any_server, owner, room_id, youngest, "ADMIN")
    await make(any_server, owner, room_id, admin, "ADMIN")
    await as_user(any_server, owner, LEAVE, r=room_id)
    # The oldest admin, though a member joined before them.
    assert await roles(any_server, oldest, room_id) == {
        oldest.id: "MEMBER",
        admin.id: "OWNER",
        youngest.id: "ADMIN",
    }
    await as_user(any_server, admin, LEAVE, r=room_id)
    assert await roles(any_server, oldest, room_id) == {oldest.id: "MEMBER", youngest.id: "OWNER"}
    await make(any_server, youngest, room_id, oldest, "MEMBER")  # still a member
    await as_user(any_server, youngest, LEAVE, r=room_id)
    # No admin left: the oldest member.
    assert await roles(any_server, oldest, room_id) == {oldest.id: "OWNER"}


async def test_a_group_stored_before_roles_reads_its_oldest_member_as_owner(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    creator, bob, carol = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, creator, [bob, carol])
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_env["PLOP_MONGO_URL"])
    try:
        database = client.get_default_database()
        # As rooms were stored before roles: no owner, no admins; and a member whose
        # membership document is missing.
        await database["rooms"].update_one(
            {"_id": ObjectId(room_id)}, {"$unset": {"owner_id": "", "admin_ids": ""}}
        )
        await database["memberships"].delete_one(
            {"room_id": ObjectId(room_id), "user_id": ObjectId(carol.id)}
        )
        created = (await database["rooms"].find_one({"_id": ObjectId(room_id)}) or {})["created_at"]
    finally:
        await client.close()
    assert await roles(server_a, bob, room_id) == {
        creator.id: "OWNER",
        bob.id: "MEMBER",
        carol.id: "MEMBER",
    }
    page = (await as_user(server_a, bob, MEMBERSHIPS, r=room_id))["room"]["memberships"]
    assert page["edges"][2]["node"]["joinedAt"][:19] == created.isoformat()[:19]
    assert await refused(server_a, bob, RENAME, r=room_id, t="t") == "FORBIDDEN"
    await as_user(server_a, creator, RENAME, r=room_id, t="renamed")
    await as_user(server_a, creator, LEAVE, r=room_id)
    assert await roles(server_a, carol, room_id) == {bob.id: "OWNER", carol.id: "MEMBER"}


# --- delivery -------------------------------------------------------------------------


def changed_room(result: dict[str, Any]) -> dict[str, Any]:
    activity = result["roomActivity"]
    assert activity["__typename"] == "MembersChanged", activity
    room: dict[str, Any] = activity["room"]
    return room


def role_list(room: dict[str, Any]) -> list[tuple[str, str]]:
    edges = room["memberships"]["edges"]
    return [(edge["node"]["user"]["id"], edge["node"]["role"]) for edge in edges]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_every_change_reaches_room_activity_on_every_instance(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    owner, admin, watcher, leaver = [await sign_up(server_a) for _ in range(4)]
    room_id = await group_room(server_a, owner, [admin, watcher, leaver], title="before")
    async with (
        ws_session(server_b, subprotocol, watcher.token) as session,
        subscribed(server_b, session, ROOM_ACTIVITY, r=room_id) as activity,
        subscribed(server_b, session, ROOM_UPDATED) as updated,
    ):
        await as_user(server_a, owner, RENAME, r=room_id, t="after")
        room = changed_room(await activity.next())
        assert (room["title"], room["viewerRole"]) == ("after", "MEMBER")
        assert (await updated.next())["roomUpdated"]["title"] == "after"

        await make(server_a, owner, room_id, admin, "ADMIN")
        assert (admin.id, "ADMIN") in role_list(changed_room(await activity.next()))

        await as_user(server_a, admin, REMOVE, r=room_id, u=leaver.id)
        room = changed_room(await activity.next())
        assert room["memberCount"] == 3 and leaver.id not in dict(role_list(room))

        await make(server_a, owner, room_id, watcher, "OWNER")
        room = changed_room(await activity.next())
        assert room["viewerRole"] == "OWNER" and (owner.id, "ADMIN") in role_list(room)

        await as_user(server_a, watcher, LEAVE, r=room_id)  # the owner leaves
        await ends_forbidden(activity)
    survivors = await roles(server_b, owner, room_id)
    assert survivors == {owner.id: "OWNER", admin.id: "ADMIN"}


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_removed_members_subscriptions_end_forbidden_on_every_instance(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    owner, member, removed = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, owner, [member, removed])
    await send(server_a, owner, room_id, "before")
    # The removed member's send path knows the room on instance B before the removal.
    await send(server_b, removed, room_id, "mine")
    async with (
        ws_session(server_b, subprotocol, removed.token) as session,
        subscribed(server_b, session, MESSAGE_ADDED, r=room_id) as messages,
        subscribed(server_b, session, ROOM_ACTIVITY, r=room_id) as activity,
        ws_session(server_b, subprotocol, member.token) as member_session,
        subscribed(server_b, member_session, MESSAGE_ADDED, r=room_id) as stays,
    ):
        await as_user(server_a, owner, REMOVE, r=room_id, u=removed.id)
        await ends_forbidden(messages)
        await ends_forbidden(activity)
        await send(server_a, owner, room_id, "after")
        assert (await stays.next())["messageAdded"]["text"] == "after"
        assert messages.results.empty() and activity.results.empty()
        async with ws_session(server_a, subprotocol, removed.token) as again:
            assert await error_code(again, MESSAGE_ADDED, r=room_id, after=0) == "FORBIDDEN"
            assert await error_code(again, ROOM_ACTIVITY, r=room_id) == "FORBIDDEN"
    for server in (server_a, server_b):
        async with http_session(server, removed.token) as plain:
            assert await error_code(plain, SEND, r=room_id, t="let me in") == "FORBIDDEN"
            assert await error_code(plain, HISTORY, r=room_id) == "FORBIDDEN"


TYPING_ACTIVITY = """
subscription($r: ID!) {
  roomActivity(roomId: $r) { __typename ... on TypingEvent { typing user { id } } }
}
"""
SET_TYPING = "mutation($r: ID!) { setTyping(roomId: $r, typing: true) }"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_removed_members_typing_ends_with_the_removal(
    any_server: ServerProcess, subprotocol: str
) -> None:
    owner, watcher, removed = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, owner, [watcher, removed])
    async with (
        ws_session(any_server, subprotocol, watcher.token) as session,
        subscribed(any_server, session, TYPING_ACTIVITY, r=room_id) as activity,
    ):
        await as_user(any_server, removed, SET_TYPING, r=room_id)
        started = (await activity.next())["roomActivity"]
        assert (started["typing"], started["user"]["id"]) == (True, removed.id)
        await as_user(any_server, owner, REMOVE, r=room_id, u=removed.id)
        # The removal's MembersChanged and the end of the typing, in either order,
        # well before the typing would expire by itself (6 s).
        ended = [(await activity.next(within=4))["roomActivity"] for _ in range(2)]
    assert {"__typename": "TypingEvent", "typing": False, "user": {"id": removed.id}} in ended


# --- budgets --------------------------------------------------------------------------

BUDGET = 2


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def small_budgets() -> AsyncIterator[ServerProcess]:
    """An embedded server whose new budgets are two calls, one back a minute."""
    names = ("UPDATE_ROOM", "REMOVE_MEMBER", "SET_MEMBER_ROLE")
    server = ServerProcess(
        "role-budgets",
        {
            **{f"PLOP_{name}_LIMIT": str(BUDGET) for name in names},
            **{f"PLOP_{name}_LIMIT_SECONDS": "120" for name in names},
        },
    )
    await server.start()
    yield server
    await server.stop()


async def test_renaming_removing_and_giving_roles_have_budgets(
    small_budgets: ServerProcess,
) -> None:
    server = small_budgets
    owner, *others = [await sign_up(server) for _ in range(4)]
    room_id = await group_room(server, owner, others)
    for i in range(BUDGET):
        await as_user(server, owner, RENAME, r=room_id, t=f"t{i}")
        await make(server, owner, room_id, others[i], "ADMIN")
        await as_user(server, owner, REMOVE, r=room_id, u=others[i].id)
    assert_limited(await post(server, RENAME, owner.token, r=room_id, t="again"))
    assert_limited(
        await post(server, SET_ROLE, owner.token, r=room_id, u=others[2].id, role="ADMIN")
    )
    assert_limited(await post(server, REMOVE, owner.token, r=room_id, u=others[2].id))
    assert await roles(server, owner, room_id) == {owner.id: "OWNER", others[2].id: "MEMBER"}


# --- push -----------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pusher(
    real_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ServerProcess, PushReceiver]]:
    async with (
        running_push_receiver(tmp_path_factory.mktemp("roles-push")) as receiver,
        webhook_pusher("roles-push", real_env, receiver) as server,
    ):
        yield server, receiver


async def test_a_removed_member_is_pushed_nothing_sent_after_the_removal(
    pusher: tuple[ServerProcess, PushReceiver],
) -> None:
    server, receiver = pusher
    owner, member, removed = [await sign_up(server) for _ in range(3)]
    devices = {}
    for account in (member, removed):
        devices[account.id] = f"roles-{account.id}"
        await as_user(server, account, REGISTER_DEVICE, p="WEBHOOK", t=devices[account.id])
    room_id = await group_room(server, owner, [member, removed])
    await send(server, owner, room_id, "before")
    await receiver.wait_for(1, devices[member.id])
    await receiver.wait_for(1, devices[removed.id])
    await as_user(server, owner, REMOVE, r=room_id, u=removed.id)
    await send(server, owner, room_id, "after")
    # The member's push of "after" came: the removed member's would have come with it.
    (_, after) = await receiver.wait_for(2, devices[member.id])
    assert after.body == "after"
    assert [push.body for push in receiver.for_token(devices[removed.id])] == ["before"]
