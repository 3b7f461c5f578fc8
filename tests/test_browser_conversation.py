"""Two people on the chat page answer, react, send a photo, mention each other and
find an old message, in Debian's headless Chromium, on the embedded default and on
the real services (Kafka, FerretDB, Redis, versitygw): rich messages end to end."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.support.browser import Browser
from tests.support.chat import direct_room, send
from tests.support.clients import sign_up
from tests.support.pages import ChatPage
from tests.support.server import ServerProcess
from tests.support.uploads import png
from tests.test_browser import browser
from tests.test_browser_rich_messages import click, wait_reactions
from tests.test_web_files import choose_file, loaded_image

__all__ = ["browser"]  # the run's one Chromium, shared with tests/test_browser.py

PASSWORD = "correct horse battery"  # the password tests.support.clients.sign_up uses
OLDER_MESSAGES = 35  # more than the page's first page of 30: the old one is not shown
TAB = "\ue004"  # WebDriver's Tab key
SEARCH_RESULTS = (
    "return [...document.querySelectorAll('#message-results li[data-message-id]')]"
    ".map(li => li.querySelector('.text').textContent)"
)


async def test_two_people_answer_react_send_a_photo_mention_and_find_an_old_message(
    browser: Browser, any_server: ServerProcess, tmp_path: Path
) -> None:
    server = any_server
    alice_account = await sign_up(server, "alice")
    bob_account = await sign_up(server, "bob")
    room_id = await direct_room(server, alice_account, bob_account)
    word = f"k{secrets.token_hex(4)}"
    await send(server, alice_account, room_id, f"Café plans {word}")
    for number in range(OLDER_MESSAGES):
        await send(server, alice_account, room_id, f"filler {number}")
    question_seq = OLDER_MESSAGES + 2
    await send(server, alice_account, room_id, "where do we meet?")
    photo = tmp_path / "place.png"
    photo.write_bytes(png(48, 32, "teal"))

    await browser.run(browser.console_errors)  # forget what came before
    async with browser.windows(tmp_path) as windows:
        alice = ChatPage(await windows.open(server.base_url))
        bob = ChatPage(await windows.open(server.base_url))
        await alice.log_in(alice_account.username, PASSWORD)
        await bob.log_in(bob_account.username, PASSWORD)
        await alice.open_room(bob_account.display_name)
        await bob.open_room(alice_account.display_name)

        # Bob answers the question; Alice sees his reply quote it.
        await bob.click_button(f"#messages li[data-seq='{question_seq}'] .actions", "Reply")
        await bob.send("at the station")
        answer_seq = question_seq + 1
        quote = f"#messages li[data-seq='{answer_seq}'] .quoted"
        await alice.window.element(quote)
        assert await alice.window.texts(quote) == ["where do we meet?"]

        # Alice reacts to the answer; both see one thumbs-up, hers.
        await alice.click_button(f"#messages li[data-seq='{answer_seq}'] .actions", "React")
        await click(alice, f"#messages li[data-seq='{answer_seq}'] .picker button[data-emoji='👍']")
        await wait_reactions(alice, answer_seq, [["👍", 1, True]])
        await wait_reactions(bob, answer_seq, [["👍", 1, False]])

        # Alice sends a photo; Bob's page loads it from storage.
        await choose_file(alice.window, "#attach", photo)
        await alice.window.click("#send")
        photo_seq = answer_seq + 1
        shown = f"#messages li[data-seq='{photo_seq}'] img.attachment"
        assert await loaded_image(bob.window, shown) == 48

        # Bob mentions Alice, completing her name; her page marks the message.
        await bob.window.type("#text", "see you @" + alice_account.username[:5])
        await bob.window.wait_value(
            "return [...document.querySelectorAll('#mention-choices li')]"
            ".map(li => li.dataset.username)",
            lambda names: names == [alice_account.username],
            "Alice offered for the @",
        )
        await bob.window.type("#text", TAB + "soon\n", clear=False)
        mention_seq = photo_seq + 1
        await alice.window.element(f"#messages li[data-seq='{mention_seq}'].mentions-me")
        assert await alice.window.texts(f"#messages li[data-seq='{mention_seq}'] .text") == [
            f"see you @{alice_account.username} soon"
        ]

        # Bob finds the first message, older than the page shows, without its accent.
        await bob.window.type("#message-search", f"cafe {word.upper()}\n")
        found = await bob.window.wait_value(SEARCH_RESULTS, bool, "a search result")
        assert found == [f"Café plans {word}"]
        await bob.window.script(
            "document.querySelector('#message-results li[data-message-id]').click()"
        )
        await bob.window.element("#messages li.found[data-seq='1']")
        assert await bob.window.texts("#messages li.found .text") == [f"Café plans {word}"]
    assert await browser.run(browser.console_errors) == []
