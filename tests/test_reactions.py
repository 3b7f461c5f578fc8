"""Reactions: one emoji per (message, member, emoji), counted once however many
instances store it at once, shown per emoji with the viewer's own, live on
roomActivity on every instance, for members only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError

from tests.support.chat import as_user, direct_room, group_room, send
from tests.support.clients import (
    SUBPROTOCOLS,
    Account,
    call,
    error_code,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.rich_messages import (
    ADD_REACTION,
    DELETE,
    REACTION_ACTIVITY,
    REMOVE_REACTION,
    counts,
    next_activity,
    rich_history,
)
from tests.support.server import ServerProcess

BLOCK = "mutation($u: ID!) { blockUser(userId: $u) }"
UNBLOCK = "mutation($u: ID!) { unblockUser(userId: $u) }"
# The servers' defaults (settings.py): the caps and the budget these tests reach.
MAX_EMOJI_PER_USER = 10
MAX_EMOJI_PER_MESSAGE = 20
REACT_BUDGET = 60
# Twenty distinct emoji, and one more.
EMOJI = [chr(code) for code in range(0x1F600, 0x1F600 + MAX_EMOJI_PER_MESSAGE + 1)]


async def react(
    server: ServerProcess, account: Account, message_id: str, emoji: str
) -> dict[str, Any]:
    added: dict[str, Any] = (await as_user(server, account, ADD_REACTION, m=message_id, e=emoji))[
        "addReaction"
    ]
    return added


async def test_concurrent_identical_reactions_on_two_instances_count_once(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    alice, bob, carol = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, [bob, carol])
    message = await send(server_a, alice, room_id, "react to me")
    async with (
        ws_session(server_b, SUBPROTOCOLS[0], carol.token) as watcher,
        subscribed(server_b, watcher, REACTION_ACTIVITY, r=room_id) as activity,
        http_session(server_a, bob.token) as on_a,
        http_session(server_b, bob.token) as on_b,
    ):
        # The same reaction, spelled with and without its variation selector, ten
        # times at once on each instance.
        answers = await asyncio.gather(
            *(
                call(session, ADD_REACTION, m=message["id"], e=emoji)
                for session in (on_a, on_b)
                for emoji in ("❤", "❤️") * 5
            )
        )
        for answer in answers:
            assert answer["addReaction"]["id"] == message["id"]
        (stored,) = await rich_history(server_b, carol, room_id)
        assert counts(stored) == [("❤️", 1)]
        assert stored["reactions"][0]["users"] == [{"id": bob.id}]
        assert stored["reactions"][0]["reactedByViewer"] is False  # carol's view

        added = await next_activity(activity)
        assert (added["__typename"], added["emoji"], added["added"]) == (
            "ReactionChanged",
            "❤️",
            True,
        )
        assert added["user"] == {"id": bob.id}
        # The next event is the removal: the twenty adds published one event.
        await call(on_a, REMOVE_REACTION, m=message["id"], e="❤")
        removed = await next_activity(activity)
        assert (removed["emoji"], removed["added"]) == ("❤️", False)
        assert removed["message"]["reactions"] == []


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_reaction_changed_reaches_room_activity_on_the_other_instance(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    message = await send(server_a, alice, room_id, "hello")
    async with (
        ws_session(server_b, subprotocol, alice.token) as watcher,
        subscribed(server_b, watcher, REACTION_ACTIVITY, r=room_id) as activity,
    ):
        await react(server_a, bob, message["id"], "👍")
        event = await next_activity(activity)
        assert event["__typename"] == "ReactionChanged"
        assert (event["emoji"], event["added"], event["user"]) == ("👍", True, {"id": bob.id})
        assert event["message"]["id"] == message["id"]
        assert event["message"]["reactions"] == [
            {"emoji": "👍", "count": 1, "reactedByViewer": False, "users": [{"id": bob.id}]}
        ]
        await react(server_a, alice, message["id"], "👍")
        event = await next_activity(activity)
        assert event["user"] == {"id": alice.id}
        (group,) = event["message"]["reactions"]
        assert (group["count"], group["reactedByViewer"]) == (2, True)  # alice's view
        assert group["users"] == [{"id": bob.id}, {"id": alice.id}]  # oldest first


async def test_groups_are_most_used_first_with_the_viewers_own(any_server: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(any_server) for _ in range(3)]
    room_id = await group_room(any_server, alice, [bob, carol])
    message = await send(any_server, alice, room_id, "vote")
    await react(any_server, alice, message["id"], "🎉")
    for voter in (bob, carol):
        await react(any_server, voter, message["id"], "👍🏽")
    await react(any_server, carol, message["id"], "🇫🇷")
    seen_by_bob = (await react(any_server, bob, message["id"], "👍🏽"))["reactions"]  # again
    assert [(g["emoji"], g["count"], g["reactedByViewer"]) for g in seen_by_bob] == [
        ("👍🏽", 2, True),
        ("🎉", 1, False),  # as used as the flag, and used first
        ("🇫🇷", 1, False),
    ]
    (stored,) = await rich_history(any_server, carol, room_id)
    assert [group["reactedByViewer"] for group in stored["reactions"]] == [True, False, True]

    removed = (await as_user(any_server, carol, REMOVE_REACTION, m=message["id"], e="👍🏽"))[
        "removeReaction"
    ]["reactions"]
    assert [(g["emoji"], g["count"]) for g in removed] == [("🎉", 1), ("👍🏽", 1), ("🇫🇷", 1)]
    # Removing it again changes nothing.
    again = await as_user(any_server, carol, REMOVE_REACTION, m=message["id"], e="👍🏽")
    assert again["removeReaction"]["reactions"] == removed


async def test_exactly_one_emoji_is_taken(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    room_id = await direct_room(any_server, alice, bob)
    message = await send(any_server, alice, room_id, "hi")
    async with http_session(any_server, bob.token) as session:
        for emoji in ("abc", "", " ", "👍👍", "👍 ", "a👍", ":thumbs_up:", "\ufe0f", "1"):
            assert await error_code(session, ADD_REACTION, m=message["id"], e=emoji) == (
                "BAD_USER_INPUT"
            ), emoji
            assert await error_code(session, REMOVE_REACTION, m=message["id"], e=emoji) == (
                "BAD_USER_INPUT"
            ), emoji
        for emoji in ("👍", "👨‍👩‍👧‍👦", "1️⃣", "🏳️‍🌈"):
            await call(session, ADD_REACTION, m=message["id"], e=emoji)
        # Without its variation selector, the flag is the same reaction.
        reactions = (await call(session, ADD_REACTION, m=message["id"], e="🏳\u200d🌈"))[
            "addReaction"
        ]["reactions"]
    assert sorted(group["emoji"] for group in reactions) == sorted(["👍", "👨‍👩‍👧‍👦", "1️⃣", "🏳️‍🌈"])
    assert all(group["count"] == 1 for group in reactions)


async def test_caps_per_member_and_per_message(server_a: ServerProcess) -> None:
    alice, bob, carol = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, [bob, carol])
    message = await send(server_a, alice, room_id, "lots")
    async with http_session(server_a, bob.token) as session:
        for emoji in EMOJI[:MAX_EMOJI_PER_USER]:
            await call(session, ADD_REACTION, m=message["id"], e=emoji)
        over = EMOJI[MAX_EMOJI_PER_USER]
        assert await error_code(session, ADD_REACTION, m=message["id"], e=over) == "BAD_USER_INPUT"
        await call(session, ADD_REACTION, m=message["id"], e=EMOJI[0])  # one of his: fine
    async with http_session(server_a, carol.token) as session:
        for emoji in EMOJI[MAX_EMOJI_PER_USER:MAX_EMOJI_PER_MESSAGE]:
            await call(session, ADD_REACTION, m=message["id"], e=emoji)
    async with http_session(server_a, alice.token) as session:
        last = EMOJI[MAX_EMOJI_PER_MESSAGE]
        assert await error_code(session, ADD_REACTION, m=message["id"], e=last) == "BAD_USER_INPUT"
        reactions = (await call(session, ADD_REACTION, m=message["id"], e=EMOJI[0]))["addReaction"][
            "reactions"
        ]
    assert len(reactions) == MAX_EMOJI_PER_MESSAGE
    assert (reactions[0]["emoji"], reactions[0]["count"]) == (EMOJI[0], 2)


async def test_attackers_get_clear_errors(server_a: ServerProcess) -> None:
    alice, bob, eve = [await sign_up(server_a) for _ in range(3)]
    room_id = await direct_room(server_a, alice, bob)
    message = await send(server_a, alice, room_id, "ours")
    eves_room = await direct_room(server_a, eve, alice)
    eves = await send(server_a, eve, eves_room, "eve's")
    async with http_session(server_a, eve.token) as session:
        # Not a member: FORBIDDEN, and nothing stored.
        assert await error_code(session, ADD_REACTION, m=message["id"], e="👍") == "FORBIDDEN"
        assert await error_code(session, REMOVE_REACTION, m=message["id"], e="👍") == "FORBIDDEN"
    async with http_session(server_a, bob.token) as session:
        # Another room's message, of a room bob is not in.
        assert await error_code(session, ADD_REACTION, m=eves["id"], e="👍") == "FORBIDDEN"
        assert await error_code(session, ADD_REACTION, m="nope", e="👍") == "BAD_USER_INPUT"
        assert await error_code(session, ADD_REACTION, m="0" * 24, e="👍") == "NOT_FOUND"
        # Ill-typed variables.
        assert await error_code(session, ADD_REACTION, m=5, e=["👍"]) == "BAD_USER_INPUT"
        assert await error_code(session, ADD_REACTION, m=None, e="👍") == "BAD_USER_INPUT"
        assert await error_code(session, REMOVE_REACTION, m=message["id"], e=7) == "BAD_USER_INPUT"
    (stored,) = await rich_history(server_a, alice, room_id)
    assert stored["reactions"] == []


async def test_a_block_closes_reactions_in_the_direct_room(server_a: ServerProcess) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    message = await send(server_a, alice, room_id, "hi")
    await react(server_a, bob, message["id"], "👋")
    await as_user(server_a, alice, BLOCK, u=bob.id)
    for account in (bob, alice):  # the blocked and the blocker alike
        async with http_session(server_a, account.token) as session:
            for document in (ADD_REACTION, REMOVE_REACTION):
                assert await error_code(session, document, m=message["id"], e="👋") == "FORBIDDEN"
    await as_user(server_a, alice, UNBLOCK, u=bob.id)
    reactions = (await as_user(server_a, bob, REMOVE_REACTION, m=message["id"], e="👋"))[
        "removeReaction"
    ]["reactions"]
    assert reactions == []


async def test_a_deleted_message_takes_and_shows_no_reactions(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    message = await send(server_a, alice, room_id, "soon gone")
    await react(server_a, bob, message["id"], "😮")
    async with (
        ws_session(server_b, SUBPROTOCOLS[1], bob.token) as watcher,
        subscribed(server_b, watcher, REACTION_ACTIVITY, r=room_id) as activity,
    ):
        await as_user(server_a, alice, DELETE, m=message["id"])
        updated = await next_activity(activity)
        assert updated["message"] == {"id": message["id"], "deleted": True, "reactions": []}
    (stored,) = await rich_history(server_a, bob, room_id)
    assert stored["deleted"] is True and stored["reactions"] == []
    async with http_session(server_a, bob.token) as session:
        for document in (ADD_REACTION, REMOVE_REACTION):
            assert await error_code(session, document, m=message["id"], e="😮") == "BAD_USER_INPUT"


async def test_a_flood_of_reactions_is_rate_limited(server_a: ServerProcess) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    message = await send(server_a, alice, room_id, "flood me")
    refused: list[TransportQueryError] = []
    async with http_session(server_a, bob.token) as session:
        for turn in range(REACT_BUDGET * 2):
            document = ADD_REACTION if turn % 2 == 0 else REMOVE_REACTION
            try:
                await call(session, document, m=message["id"], e="🔥")
            except TransportQueryError as exc:
                refused.append(exc)
    assert refused, "no call was refused"
    for error in refused:
        assert error.errors is not None
        assert error.errors[0]["extensions"]["code"] == "RATE_LIMITED"
        assert error.errors[0]["extensions"]["retryAfter"] > 0
