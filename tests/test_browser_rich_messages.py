"""Replies, reactions and @-completion on the chat page, in Debian's headless Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import Browser
from tests.support.chat import as_user, direct_room, group_room, send
from tests.support.clients import sign_up
from tests.support.pages import ChatPage
from tests.support.rich_messages import RICH_HISTORY, send_rich
from tests.support.server import ServerProcess

PASSWORD = "correct horse battery"  # the password tests.support.clients.sign_up uses
FILLER_MESSAGES = 40  # more than the page's first page of 30
TAB = "\ue004"  # WebDriver's Tab key


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Chromium for the whole run (scripts/browser.sh installs it; missing, this fails)."""
    chromium = Browser()
    yield chromium
    chromium.quit()


def reactions_script(seq: int) -> str:
    """The reaction chips of one message as [emoji, count, own]."""
    css = json.dumps(f"#messages li[data-seq='{seq}'] .reactions .reaction")
    return (
        f"return [...document.querySelectorAll({css})]"
        ".map(b => [b.dataset.emoji, Number(b.dataset.count), b.classList.contains('own')])"
    )


async def wait_reactions(page: ChatPage, seq: int, expected: list[list[object]]) -> None:
    await page.window.wait_value(
        reactions_script(seq), lambda shown: shown == expected, f"reactions {expected}"
    )


async def click(page: ChatPage, css: str) -> None:
    await page.window.wait_value(
        f"const e = document.querySelector({json.dumps(css)}); if (e) e.click(); return !!e",
        bool,
        f"{css} to click",
    )


async def test_a_reply_quotes_its_original_and_jumps_to_it(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice, bob = await sign_up(server_a, "alice"), await sign_up(server_a, "bob")
    room_id = await direct_room(server_a, alice, bob)
    original = await send(server_a, alice, room_id, "the very first")
    for number in range(FILLER_MESSAGES):
        await send(server_a, alice, room_id, f"m{number}")
    last_seq = FILLER_MESSAGES + 2
    await send_rich(server_a, alice, room_id, "back to the start", reply_to=original["id"])
    async with browser.windows(tmp_path) as windows:
        page = ChatPage(await windows.open(server_a.base_url))
        await page.log_in(bob.username, PASSWORD)
        await page.open_room(alice.display_name)
        await page.window.element(f"#messages li[data-seq='{last_seq}'] .quote")
        quoted = await page.window.texts(f"#messages li[data-seq='{last_seq}'] .quote")
        assert quoted == [f"{alice.display_name}the very first"]
        assert await page.window.texts("#messages li[data-seq='1']") == []  # not loaded yet
        await click(page, f"#messages li[data-seq='{last_seq}'] .quote")
        await page.window.element("#messages li[data-seq='1'].highlight")

        # Bob answers the last message from the page.
        await page.click_button(f"#messages li[data-seq='{last_seq}'] .actions", "Reply")
        await page.window.element("#replying")
        await page.send("answered")
        await page.window.element(f"#messages li[data-seq='{last_seq + 1}'] .quote")
        assert await page.window.texts(f"#messages li[data-seq='{last_seq + 1}'] .quoted") == [
            "back to the start"
        ]
        assert await page.window.script("return document.getElementById('replying').hidden")
    stored = (await as_user(server_a, alice, RICH_HISTORY, r=room_id, last=1))["messages"]
    assert stored["edges"][0]["node"]["replyTo"]["seq"] == last_seq


async def test_reactions_are_added_counted_and_removed_live(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice, bob = await sign_up(server_a, "alice"), await sign_up(server_a, "bob")
    room_id = await direct_room(server_a, alice, bob)
    await send(server_a, alice, room_id, "react to this")
    async with browser.windows(tmp_path) as windows:
        alice_page = ChatPage(await windows.open(server_a.base_url))
        bob_page = ChatPage(await windows.open(server_a.base_url))
        await alice_page.log_in(alice.username, PASSWORD)
        await bob_page.log_in(bob.username, PASSWORD)
        await alice_page.open_room(bob.display_name)
        await bob_page.open_room(alice.display_name)
        await alice_page.wait_messages([(1, "react to this")])
        await bob_page.wait_messages([(1, "react to this")])

        await bob_page.click_button("#messages li[data-seq='1'] .actions", "React")
        await click(bob_page, "#messages li[data-seq='1'] .picker button[data-emoji='👍']")
        await wait_reactions(bob_page, 1, [["👍", 1, True]])
        await wait_reactions(alice_page, 1, [["👍", 1, False]])
        await click(alice_page, "#messages li[data-seq='1'] .reaction[data-emoji='👍']")
        for page in (alice_page, bob_page):
            await wait_reactions(page, 1, [["👍", 2, True]])
        await click(bob_page, "#messages li[data-seq='1'] .reaction[data-emoji='👍']")
        await wait_reactions(alice_page, 1, [["👍", 1, True]])
        await wait_reactions(bob_page, 1, [["👍", 1, False]])


async def test_typing_at_completes_a_member_and_the_mention_is_shown(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice, bob, carol = [await sign_up(server_a, name) for name in ("alice", "bob", "carol")]
    room_id = await group_room(server_a, alice, [bob, carol], title="Crew")
    async with browser.windows(tmp_path) as windows:
        alice_page = ChatPage(await windows.open(server_a.base_url))
        bob_page = ChatPage(await windows.open(server_a.base_url))
        await alice_page.log_in(alice.username, PASSWORD)
        await bob_page.log_in(bob.username, PASSWORD)
        await bob_page.open_room("Crew")
        await alice_page.open_room("Crew")
        await alice_page.window.type("#text", "hi @" + bob.username[:5])
        choices = await alice_page.window.wait_value(
            "return [...document.querySelectorAll('#mention-choices li')]"
            ".map(li => li.dataset.username)",
            lambda names: bool(names),
            "the members starting with the typed name",
        )
        assert choices == [bob.username]
        await alice_page.window.type("#text", TAB, clear=False)
        value = await alice_page.window.script("return document.getElementById('text').value")
        assert value == f"hi @{bob.username} "
        await alice_page.window.type("#text", "look\n", clear=False)
        await bob_page.wait_messages([(1, f"hi @{bob.username} look")])
        await bob_page.window.element("#messages li[data-seq='1'].mentions-me")
        await alice_page.wait_messages([(1, f"hi @{bob.username} look")])
        assert await alice_page.window.texts("#messages li.mentions-me") == []
    stored = (await as_user(server_a, carol, RICH_HISTORY, r=room_id, last=1))["messages"]
    assert stored["edges"][0]["node"]["mentions"] == [{"id": bob.id, "username": bob.username}]
