"""Friend requests, friendships and user search, with their error codes."""

from __future__ import annotations

import pytest

from tests.support.chat import (
    FRIEND_REQUESTS,
    FRIENDS,
    REMOVE_FRIEND,
    RESPOND,
    SEARCH,
    SEND_FRIEND_REQUEST,
    as_user,
    befriend,
)
from tests.support.clients import Account, error_code, http_session, sign_up, unique_name
from tests.support.server import ServerProcess

UNKNOWN_ID = "0" * 24


async def friend_ids(server: ServerProcess, account: Account) -> set[str]:
    data = await as_user(server, account, FRIENDS)
    return {user["id"] for user in data["friends"]}


async def test_search_is_a_case_insensitive_prefix_on_username_or_display_name(
    any_server: ServerProcess,
) -> None:
    tag = unique_name("zq")  # a prefix no other test's users share
    viewer = await sign_up(any_server, prefix=tag)
    by_name = await sign_up(any_server, prefix=tag)
    by_display = await sign_up(any_server, display_name=f"{tag.upper()} Smith")
    await sign_up(any_server, display_name=f"Mr {tag}")  # not a prefix match
    found = await as_user(any_server, viewer, SEARCH, q=tag.upper())
    ids = {user["id"] for user in found["searchUsers"]}
    assert ids == {by_name.id, by_display.id}  # the viewer is left out
    limited = await as_user(any_server, viewer, SEARCH, q=tag, first=1)
    assert len(limited["searchUsers"]) == 1
    async with http_session(any_server, viewer.token) as session:
        assert await error_code(session, SEARCH, q=tag, first=51) == "BAD_USER_INPUT"
        assert await error_code(session, SEARCH, q="  ") == "BAD_USER_INPUT"


async def test_request_then_accept_makes_friends_both_ways(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    sent = (await as_user(any_server, alice, SEND_FRIEND_REQUEST, u=bob.id))["sendFriendRequest"]
    assert (sent["status"], sent["from"]["id"], sent["to"]["id"]) == ("PENDING", alice.id, bob.id)
    for account in (alice, bob):
        pending = (await as_user(any_server, account, FRIEND_REQUESTS))["friendRequests"]
        assert [request["id"] for request in pending] == [sent["id"]]
    answered = (await as_user(any_server, bob, RESPOND, r=sent["id"], a=True))[
        "respondToFriendRequest"
    ]
    assert answered["status"] == "ACCEPTED"
    assert await friend_ids(any_server, alice) == {bob.id}
    assert await friend_ids(any_server, bob) == {alice.id}
    assert (await as_user(any_server, alice, FRIEND_REQUESTS))["friendRequests"] == []


async def test_asking_someone_who_asked_you_accepts_their_request(
    any_server: ServerProcess,
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    theirs = (await as_user(any_server, alice, SEND_FRIEND_REQUEST, u=bob.id))["sendFriendRequest"]
    mine = (await as_user(any_server, bob, SEND_FRIEND_REQUEST, u=alice.id))["sendFriendRequest"]
    assert (mine["id"], mine["status"]) == (theirs["id"], "ACCEPTED")
    assert await friend_ids(any_server, alice) == {bob.id}


async def test_request_rules(any_server: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, SEND_FRIEND_REQUEST, u=alice.id) == "BAD_USER_INPUT"
        assert await error_code(session, SEND_FRIEND_REQUEST, u=UNKNOWN_ID) == "NOT_FOUND"
        assert await error_code(session, SEND_FRIEND_REQUEST, u="x") == "BAD_USER_INPUT"
    request = (await as_user(any_server, alice, SEND_FRIEND_REQUEST, u=bob.id))["sendFriendRequest"]
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, SEND_FRIEND_REQUEST, u=bob.id) == "CONFLICT"
        # Only the recipient answers.
        assert await error_code(session, RESPOND, r=request["id"], a=True) == "FORBIDDEN"
    async with http_session(any_server, carol.token) as session:
        assert await error_code(session, RESPOND, r=request["id"], a=True) == "FORBIDDEN"
        assert await error_code(session, RESPOND, r=UNKNOWN_ID, a=True) == "NOT_FOUND"
    await as_user(any_server, bob, RESPOND, r=request["id"], a=True)
    async with http_session(any_server, bob.token) as session:
        assert await error_code(session, RESPOND, r=request["id"], a=False) == "CONFLICT"
        assert await error_code(session, SEND_FRIEND_REQUEST, u=alice.id) == "CONFLICT"


async def test_declined_request_makes_no_friends_and_may_be_sent_again(
    any_server: ServerProcess,
) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    first = (await as_user(any_server, alice, SEND_FRIEND_REQUEST, u=bob.id))["sendFriendRequest"]
    declined = (await as_user(any_server, bob, RESPOND, r=first["id"], a=False))[
        "respondToFriendRequest"
    ]
    assert declined["status"] == "DECLINED"
    assert await friend_ids(any_server, alice) == set()
    again = (await as_user(any_server, alice, SEND_FRIEND_REQUEST, u=bob.id))["sendFriendRequest"]
    assert again["status"] == "PENDING" and again["id"] != first["id"]


async def test_remove_friend_ends_it_both_ways(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    await befriend(any_server, alice, bob)
    assert (await as_user(any_server, bob, REMOVE_FRIEND, u=alice.id))["removeFriend"] is True
    assert await friend_ids(any_server, alice) == set()
    assert await friend_ids(any_server, bob) == set()
    async with http_session(any_server, alice.token) as session:
        assert await error_code(session, REMOVE_FRIEND, u=bob.id) == "NOT_FOUND"


@pytest.mark.parametrize("query", [FRIENDS, FRIEND_REQUESTS])
async def test_friend_queries_need_a_viewer(any_server: ServerProcess, query: str) -> None:
    async with http_session(any_server) as session:
        assert await error_code(session, query) == "UNAUTHENTICATED"
