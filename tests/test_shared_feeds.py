"""Shared room feeds: subscriptions that render alike share one rendering per message.

Through a real server on the real services, over both subprotocols: the feed's own
counter (plop_feed_renderings_total) shows how many renderings a message cost, and
every subscriber still gets each message once, in order, shaped by its own document.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import pytest

from schema.root import build_schema
from tests.support.chat import (
    INVITE,
    MESSAGE_ADDED,
    accept_invitations,
    as_user,
    group_room,
    send,
    send_many,
)
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    LEGACY_WS,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Subscription,
    active_subscriptions,
    metric,
    sign_up,
    subscribed,
    wait_active_subscriptions,
    ws_session,
)
from tests.support.raw_socket import raw_socket
from tests.support.server import ServerProcess
from transport.sharing import _analyse

RENDERINGS = "plop_feed_renderings_total"

WITH_PRESENCE = """
subscription($r: ID!) {
  messageAdded(roomId: $r) { seq sender { id presence { status } } }
}
"""
MAYBE_TEXT = """
subscription($r: ID!, $after: Int, $withText: Boolean!) {
  messageAdded(roomId: $r, afterSeq: $after) { seq text @include(if: $withText) }
}
"""


def seqs(results: list[dict[str, Any]]) -> list[int]:
    return [result["messageAdded"]["seq"] for result in results]


async def test_many_subscribers_share_one_rendering_per_message(server_a: ServerProcess) -> None:
    owner = await sign_up(server_a)
    members = [await sign_up(server_a) for _ in range(4)]
    room_id = await group_room(server_a, owner, members)
    async with AsyncExitStack() as stack:
        lives: list[Subscription] = []
        for member in members:
            for subprotocol in SUBPROTOCOLS:
                session = await stack.enter_async_context(
                    ws_session(server_a, subprotocol, member.token)
                )
                lives.append(
                    await stack.enter_async_context(
                        subscribed(server_a, session, MESSAGE_ADDED, r=room_id)
                    )
                )
        before = await metric(server_a, RENDERINGS)
        sent = [await send(server_a, owner, room_id, f"hello {i}") for i in range(1, 6)]
        for live in lives:
            received = await live.take(5)
            assert [result["messageAdded"] for result in received] == sent
        for live in lives:
            live.assert_idle()
        assert await metric(server_a, RENDERINGS) - before == len(sent)


async def test_a_selection_that_reads_the_viewer_is_rendered_per_viewer(
    server_a: ServerProcess,
) -> None:
    # presence is visible to the user and their friends only: sharing one rendering
    # between a friend and a stranger would leak it.
    alice, friend, stranger = [await sign_up(server_a) for _ in range(3)]
    room_id = await group_room(server_a, alice, [friend])
    await as_user(server_a, alice, INVITE, r=room_id, u=[stranger.id])
    await accept_invitations(server_a, stranger)  # no friend of alice's: joins by accepting
    async with AsyncExitStack() as stack:
        lives: dict[str, Subscription] = {}
        for account in (alice, friend, stranger):
            session = await stack.enter_async_context(
                ws_session(server_a, TRANSPORT_WS, account.token)
            )
            lives[account.id] = await stack.enter_async_context(
                subscribed(server_a, session, WITH_PRESENCE, r=room_id)
            )
        before = await metric(server_a, RENDERINGS)
        await send(server_a, alice, room_id, "who can see me")
        seen = {
            account.id: (await lives[account.id].next())["messageAdded"]["sender"]["presence"]
            for account in (alice, friend, stranger)
        }
        assert seen == {
            alice.id: {"status": "ONLINE"},
            friend.id: {"status": "ONLINE"},
            stranger.id: None,
        }
        assert await metric(server_a, RENDERINGS) - before == 3


async def test_variables_below_the_root_field_keep_renderings_apart(
    server_a: ServerProcess,
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    async with (
        ws_session(server_a, LEGACY_WS, bob.token) as legacy,
        ws_session(server_a, TRANSPORT_WS, bob.token) as current,
        subscribed(server_a, legacy, MAYBE_TEXT, r=room_id, withText=True) as with_text,
        subscribed(server_a, current, MAYBE_TEXT, r=room_id, withText=False) as without,
        # afterSeq is a root argument: it picks where the stream starts, not the shape,
        # so this one shares the first one's rendering.
        subscribed(server_a, current, MAYBE_TEXT, r=room_id, after=0, withText=True) as resumed,
    ):
        before = await metric(server_a, RENDERINGS)
        await send(server_a, alice, room_id, "one")
        assert (await with_text.next())["messageAdded"] == {"seq": 1, "text": "one"}
        assert (await without.next())["messageAdded"] == {"seq": 1}
        assert (await resumed.next())["messageAdded"] == {"seq": 1, "text": "one"}
        assert await metric(server_a, RENDERINGS) - before == 2


async def test_a_late_follower_catches_up_then_goes_live_in_order(
    server_a: ServerProcess,
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    async with (
        ws_session(server_a, TRANSPORT_WS, bob.token) as first_session,
        ws_session(server_a, LEGACY_WS, bob.token) as late_session,
        subscribed(server_a, first_session, MESSAGE_ADDED, r=room_id) as first,
    ):
        await send_many(server_a, alice, room_id, 150)  # more than a feed keeps rendered
        async with subscribed(server_a, late_session, MESSAGE_ADDED, r=room_id, after=2) as late:
            await send_many(server_a, alice, room_id, 5, prefix="live")
            assert seqs(await late.take(153)) == list(range(3, 156))
            assert seqs(await first.take(155)) == list(range(1, 156))
            late.assert_idle()
        first.assert_idle()


async def test_completing_one_operation_leaves_the_others_on_its_socket(
    server_a: ServerProcess,
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    for subprotocol in SUBPROTOCOLS:
        async with (
            ws_session(server_a, subprotocol, bob.token) as session,
            subscribed(server_a, session, MESSAGE_ADDED, r=room_id) as kept,
        ):
            async with subscribed(server_a, session, MESSAGE_ADDED, r=room_id) as ended:
                first = await send(server_a, alice, room_id, "both")
                assert (await ended.next())["messageAdded"] == first
            second = await send(server_a, alice, room_id, "one")
            assert [result["messageAdded"] for result in await kept.take(2)] == [first, second]
            kept.assert_idle()


async def test_a_completed_operation_id_reused_on_its_socket_gets_each_message_once(
    server_a: ServerProcess,
) -> None:
    """A followed operation that is completed (or stopped) stops there; a new one under
    the same id gets every message once, with nothing left over from the first."""
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await group_room(server_a, alice, [bob])
    for subprotocol in SUBPROTOCOLS:
        async with raw_socket(server_a, subprotocol, bob.token) as socket:
            before = await active_subscriptions(server_a)
            await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id})
            await wait_active_subscriptions(server_a, before + 1)
            first = await send(server_a, alice, room_id, "first")
            assert (await socket.frame())["payload"]["data"]["messageAdded"] == first
            await socket.end_operation("1")
            if subprotocol == LEGACY_WS:  # graphql-ws answers a stop with complete
                assert await socket.frame() == {"type": "complete", "id": "1"}
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                while await active_subscriptions(server_a) > before:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": first["seq"]})
            await wait_active_subscriptions(server_a, before + 1)
            second = await send(server_a, alice, room_id, "second")
            frame = await socket.frame()
            assert frame["id"] == "1"
            assert frame["payload"]["data"]["messageAdded"] == second
            with pytest.raises(TimeoutError):
                await socket.frame(within=1.0)  # neither a duplicate nor the first's


def test_what_a_rendering_depends_on() -> None:
    schema = build_schema()._schema
    plain = _analyse(schema, MESSAGE_ADDED, None)
    assert plain is not None
    assert (plain.rendered_variables, plain.viewer_scoped) == (frozenset(), False)
    shaped = _analyse(schema, MAYBE_TEXT, None)
    assert shaped is not None and shaped.rendered_variables == {"withText"}
    presence = _analyse(schema, WITH_PRESENCE, None)
    assert presence is not None and presence.viewer_scoped
    fragment = """
    subscription($r: ID!, $x: Boolean!) { ...Feed }
    fragment Feed on Subscription { messageAdded(roomId: $r) { ...Body } }
    fragment Body on Message { seq text @skip(if: $x) }
    """
    through_fragments = _analyse(schema, fragment, None)
    assert through_fragments is not None
    assert through_fragments.rendered_variables == {"x"}
    assert _analyse(schema, "query { me { id } }", None) is None
