"""The chat page on one `events` subscription, in Debian's headless Chromium.

The page syncs once on load and follows the whole account on ONE `events`
subscription: messages to several rooms show (the open room's in it, the others'
in the room list) with no subscription per room; after its server is killed and
started again, it resumes from the last event's token and shows what was sent
meanwhile through another instance once and in order; and when the server refuses
that token as too far behind (SYNC_TOKEN_EXPIRED), it starts over with a new sync.
The page's server is each test's own, on the real services, so that its
subscription count is the page's alone and it can be killed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.conftest import RUN_ID
from tests.support.browser import Browser
from tests.support.chat import CREATE_GROUP, as_user, direct_room, group_room, send, send_many
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    Account,
    active_subscriptions,
    sign_up,
    wait_active_subscriptions,
)
from tests.support.pages import MESSAGES_SCRIPT, ChatPage
from tests.support.server import ServerProcess
from tests.test_browser import browser

__all__ = ["browser"]  # the run's one Chromium, shared with tests/test_browser.py

PASSWORD = "correct horse battery"  # the password tests.support.clients.sign_up uses
# What a signed-in page follows: its account's events, and its friends' presence
# (not an account event). Opening rooms adds nothing to these.
PAGE_SUBSCRIPTIONS = ("events", "presenceChanged")
# Subscriptions the page followed per room before the account stream: none now.
PER_ROOM_SUBSCRIPTIONS = ("messageAdded", "roomActivity", "roomUpdated", "roomAdded")
# The replay a token may be behind on the expiry test's server (the setting's least).
MAX_REPLAY_EVENTS = 100


async def own_server(name: str, real_env: dict[str, str], **env: str) -> ServerProcess:
    server = ServerProcess(f"{RUN_ID}-{name}", {**real_env, "PLOP_INSTANCE_ID": name, **env})
    await server.start()
    return server


@pytest_asyncio.fixture(loop_scope="session")
async def page_server(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """A server of this test's own on the real services: its subscriptions are the
    page's, and it may be killed and started again."""
    server = await own_server("web-account", real_env)
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def short_replay_server(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """Like page_server, but a token more than MAX_REPLAY_EVENTS behind is expired."""
    server = await own_server(
        "web-expiry", real_env, PLOP_SYNC_MAX_REPLAY_EVENTS=str(MAX_REPLAY_EVENTS)
    )
    try:
        yield server
    finally:
        await server.stop()


def subscribed_fields(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The root field of every subscription the page started, from its WebSocket frames."""
    fields = []
    for method, params in events:
        if method != "Network.webSocketFrameSent":
            continue
        frame = json.loads(params["response"]["payloadData"])
        if frame.get("type") == "subscribe":
            query = str(frame["payload"]["query"])
            fields += [
                name
                for name in (*PAGE_SUBSCRIPTIONS, *PER_ROOM_SUBSCRIPTIONS)
                if f"{name}(" in query or f"{name} {{" in query
            ]
    return fields


def sync_requests(events: list[tuple[str, dict[str, Any]]]) -> int:
    """How many sync queries the page posted."""
    return sum(
        1
        for method, params in events
        if method == "Network.requestWillBeSent"
        and "sync(rooms:" in str(params["request"].get("postData", ""))
    )


async def wait_subscriptions(server: ServerProcess, expected: int) -> None:
    """Waits until the server streams exactly this many subscriptions."""
    await wait_active_subscriptions(server, expected)
    assert await active_subscriptions(server) == expected


async def wait_room_list(page: ChatPage, expected: list[tuple[str, int, str]]) -> None:
    """Waits until the room list shows these rooms, in this order, each with its unread
    count and preview: [(room id, unread, preview)]."""
    script = (
        "return [...document.querySelectorAll('#rooms li[data-room-id]')].map(li =>"
        " [li.dataset.roomId, Number(li.querySelector('.unread').dataset.count),"
        " li.querySelector('.preview').textContent])"
    )
    wanted = [list(row) for row in expected]
    await page.window.wait_value(script, lambda shown: shown == wanted, f"the room list {wanted}")


def said(account: Account, text: str) -> str:
    """A message's preview in the room list."""
    return f"{account.display_name} (@{account.username}): {text}"


async def signed_in_page(
    browser: Browser, windows: Any, server: ServerProcess, account: Account
) -> ChatPage:
    page = ChatPage(await windows.open(server.base_url))
    await page.log_in(account.username, PASSWORD)
    return page


async def test_messages_to_two_rooms_show_live_on_one_events_subscription(
    browser: Browser, page_server: ServerProcess, tmp_path: Path
) -> None:
    server = page_server
    alice, bob, carol = [await sign_up(server, name) for name in ("alice", "bob", "carol")]
    with_bob = await direct_room(server, alice, bob)
    crew = await group_room(server, carol, [alice], title="Crew")
    await send(server, carol, crew, "welcome")
    before = await active_subscriptions(server)
    await browser.run(browser.network_events)  # forget what came before
    async with browser.windows(tmp_path) as windows:
        page = await signed_in_page(browser, windows, server, alice)
        await wait_subscriptions(server, before + len(PAGE_SUBSCRIPTIONS))
        # The list comes from the sync: each room with its unread count and preview.
        await wait_room_list(page, [(crew, 1, said(carol, "welcome")), (with_bob, 0, "")])

        await page.open_room(bob.display_name)
        await send(server, bob, with_bob, "to alice")
        await send(server, carol, crew, "to the crew")
        await page.wait_messages([(1, "to alice")])
        await wait_room_list(
            page, [(crew, 2, said(carol, "to the crew")), (with_bob, 0, said(bob, "to alice"))]
        )

        await page.open_room("Crew")
        await page.wait_messages([(1, "welcome"), (2, "to the crew")])
        await page.wait_unread("Crew", 0)
        await send(server, carol, crew, "live in the crew")
        await send(server, bob, with_bob, "while away")
        await page.wait_messages([(1, "welcome"), (2, "to the crew"), (3, "live in the crew")])
        await wait_room_list(
            page,
            [(with_bob, 1, said(bob, "while away")), (crew, 0, said(carol, "live in the crew"))],
        )
        # Two rooms opened and followed live: still the page's two subscriptions.
        assert await active_subscriptions(server) == before + len(PAGE_SUBSCRIPTIONS)
        events = await browser.run(browser.network_events)
    assert sorted(subscribed_fields(events)) == sorted(PAGE_SUBSCRIPTIONS)
    assert sync_requests(events) == 1


async def wait_shown(
    page: ChatPage, expected: Callable[[list[list[Any]]], bool], what: str
) -> list[list[Any]]:
    shown: list[list[Any]] = await page.window.wait_value(
        MESSAGES_SCRIPT, expected, what, within=EVENT_TIMEOUT_SECONDS + 10
    )
    return shown


async def test_a_killed_and_restarted_server_is_resumed_from_the_last_token(
    browser: Browser, page_server: ServerProcess, server_b: ServerProcess, tmp_path: Path
) -> None:
    server = page_server
    alice, bob, carol = [await sign_up(server, name) for name in ("alice", "bob", "carol")]
    with_bob = await direct_room(server, alice, bob)
    crew = await group_room(server, carol, [alice], title="Crew")
    await send(server, bob, with_bob, "before")
    await browser.run(browser.network_events)  # forget what came before
    async with browser.windows(tmp_path) as windows:
        page = await signed_in_page(browser, windows, server, alice)
        await page.open_room(bob.display_name)
        await page.wait_messages([(1, "before")])
        # Read: no write of the page's (its markRead) is in flight when it dies.
        await page.wait_unread(bob.display_name, 0)

        await server.kill()
        await page.window.element("#connection[data-state='reconnecting']")
        # Sent through the other instance while the page's is dead: only a resume from
        # the page's last token can bring these.
        await send(server_b, bob, with_bob, "while down 1")
        await send(server_b, carol, crew, "crew while down")
        await send(server_b, bob, with_bob, "while down 2")
        await server.start()

        resumed = [[1, "before"], [2, "while down 1"], [3, "while down 2"]]
        await wait_shown(page, lambda shown: shown == resumed, "the missed messages, once")
        await wait_room_list(
            page,
            [(with_bob, 0, said(bob, "while down 2")), (crew, 1, said(carol, "crew while down"))],
        )
        await page.window.element("#connection[data-state='live']")
        await send(server, bob, with_bob, "after")
        await page.wait_messages(
            [(1, "before"), (2, "while down 1"), (3, "while down 2"), (4, "after")]
        )
        assert (
            await page.window.script("return document.getElementById('room-error').textContent")
            == ""
        )
        events = await browser.run(browser.network_events)
    # Resumed, not synced again: the token was good.
    assert sync_requests(events) == 1
    assert subscribed_fields(events).count("events") >= 2


def newest_up_to(texts: dict[int, str], last: int) -> Callable[[list[list[Any]]], bool]:
    """The newest messages up to seq ``last`` (texts by seq), none missing, none twice;
    how far back they go is the page's first page (and what it loads to fill the view)."""

    def shows(shown: list[list[Any]]) -> bool:
        if not shown or shown[-1][0] != last:
            return False
        return shown == [[seq, texts[seq]] for seq in range(shown[0][0], last + 1)]

    return shows


async def test_an_expired_token_starts_over_with_a_new_sync(
    browser: Browser, short_replay_server: ServerProcess, server_b: ServerProcess, tmp_path: Path
) -> None:
    server = short_replay_server
    alice, bob = await sign_up(server, "alice"), await sign_up(server, "bob")
    with_bob = await direct_room(server, alice, bob)
    await send(server, bob, with_bob, "before")
    await browser.run(browser.network_events)  # forget what came before
    async with browser.windows(tmp_path) as windows:
        page = await signed_in_page(browser, windows, server, alice)
        await page.open_room(bob.display_name)
        await page.wait_messages([(1, "before")])
        await page.wait_unread(bob.display_name, 0)

        await server.kill()
        await page.window.element("#connection[data-state='reconnecting']")
        # More than the server replays from a token: the page's token is expired.
        missed = MAX_REPLAY_EVENTS + 10
        await send_many(server_b, bob, with_bob, missed, "m")
        await server.start()

        texts = {1: "before", **{seq: f"m {seq - 1}" for seq in range(2, missed + 2)}}
        last = missed + 1
        await wait_shown(page, newest_up_to(texts, last), f"the newest messages up to {last}")
        await page.window.element("#connection[data-state='live']")
        await send(server, bob, with_bob, "after")
        texts[last + 1] = "after"
        await wait_shown(page, newest_up_to(texts, last + 1), "the message sent after")
        await page.wait_unread(bob.display_name, 0)
        assert (
            await page.window.script("return document.getElementById('room-error').textContent")
            == ""
        )
        events = await browser.run(browser.network_events)
    # One sync on load, one more when the old token was refused.
    assert sync_requests(events) == 2


EDIT = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { id } }"
RENAME = "mutation($r: ID!, $t: String!) { updateRoom(roomId: $r, title: $t) { id } }"
REMOVE = "mutation($r: ID!, $u: ID!) { removeMember(roomId: $r, userId: $u) { id } }"
ROOM_NAMES = (
    "return [...document.querySelectorAll('#rooms li[data-room-id] .name')].map(e => e.textContent)"
)
INVITATION_NAMES = (
    "return [...document.querySelectorAll('#invitations li .name')].map(e => e.textContent)"
)


async def test_the_page_follows_an_invitation_an_edit_a_rename_and_a_removal_live(
    browser: Browser, page_server: ServerProcess, tmp_path: Path
) -> None:
    server = page_server
    alice, carol, dave = [await sign_up(server, name) for name in ("alice", "carol", "dave")]
    crew = await group_room(server, carol, [alice], title="Crew")
    first = await send(server, carol, crew, "hello crew")
    async with browser.windows(tmp_path) as windows:
        page = await signed_in_page(browser, windows, server, alice)
        await page.open_room("Crew")
        await page.wait_messages([(1, "hello crew")])

        # Dave is no friend of Alice's: his group is an invitation, shown live.
        created = await as_user(server, dave, CREATE_GROUP, t="Club", m=[alice.id])
        club = created["createGroupRoom"]["id"]
        await page.window.wait_value(INVITATION_NAMES, lambda names: names == ["Club"], "Club")

        await as_user(server, carol, EDIT, m=first["id"], t="hello crew!")
        await page.wait_messages([(1, "hello crew!")])
        await wait_room_list(page, [(crew, 0, said(carol, "hello crew!"))])
        await as_user(server, carol, RENAME, r=crew, t="Crew 2")
        await page.window.wait_value(ROOM_NAMES, lambda names: names == ["Crew 2"], "renamed")

        await page.click_button("#invitations", "Join")
        await page.window.wait_value(
            ROOM_NAMES, lambda names: names == ["Club", "Crew 2"], "Club joined, on top"
        )
        await page.window.wait_value(INVITATION_NAMES, lambda names: names == [], "none left")

        # Taken out of the open room: it leaves the list and the view, and what is
        # said there after does not bring it back.
        await as_user(server, carol, REMOVE, r=crew, u=alice.id)
        await page.window.wait_value(ROOM_NAMES, lambda names: names == ["Club"], "Crew gone")
        await page.window.wait_value(
            "return document.getElementById('composer').hidden", bool, "the room closed"
        )
        await send(server, carol, crew, "without alice")
        await send(server, dave, club, "club news")
        await wait_room_list(page, [(club, 1, said(dave, "club news"))])
        assert await page.messages() == []
