"""Photos, files and profile pictures on the chat page, in real Chromium: one window
attaches a photo and a file, the other shows the photo inline (loaded from storage)
and the file as a download link; a profile picture shows beside messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from devtools.processes import LOAD_TEST_LIMITS
from tests.conftest import RUN_ID
from tests.support.browser import Browser, Window
from tests.support.chat import direct_room
from tests.support.clients import sign_up
from tests.support.pages import ChatPage
from tests.support.server import ServerProcess
from tests.support.uploads import png
from tests.test_browser import browser

__all__ = ["browser"]  # the run's one Chromium, shared with tests/test_browser.py

PASSWORD = "correct horse battery"  # the password tests.support.clients.sign_up uses


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def files_server(tmp_path_factory: Any) -> AsyncIterator[ServerProcess]:
    """The embedded default, its files in a directory of this module's own."""
    data_dir = tmp_path_factory.mktemp("web-files")
    server = ServerProcess(
        f"{RUN_ID}-web-files", {**LOAD_TEST_LIMITS, "PLOP_DATA_DIR": str(data_dir)}
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def choose_file(window: Window, css: str, path: Path) -> None:
    """Picks a file in a file input, as the file chooser would."""
    await window.script(f"document.querySelector({css!r}).hidden = false")
    element = await window.element(css)
    await window.do(lambda _: element.send_keys(str(path)))


async def loaded_image(window: Window, css: str) -> int:
    """The natural width of the image, once the browser loaded it."""
    width: int = await window.wait_value(
        f"const i = document.querySelector({css!r}); return i ? i.naturalWidth : 0",
        lambda value: value > 0,
        f"{css} loaded",
    )
    return width


async def test_a_photo_shows_inline_a_file_as_a_link_and_a_profile_picture_beside_messages(
    browser: Browser, files_server: ServerProcess, tmp_path: Path
) -> None:
    alice_account, bob_account = await sign_up(files_server), await sign_up(files_server)
    await direct_room(files_server, alice_account, bob_account)
    photo = tmp_path / "sunset.png"
    photo.write_bytes(png(40, 30, "orange"))
    notes = tmp_path / "notes.txt"
    notes.write_text("bring the tent\n")
    portrait = tmp_path / "me.png"
    portrait.write_bytes(png(20, 20, "purple"))
    await browser.run(browser.console_errors)  # forget what came before
    async with browser.windows(tmp_path) as windows:
        alice = ChatPage(await windows.open(files_server.base_url))
        bob = ChatPage(await windows.open(files_server.base_url))
        await alice.log_in(alice_account.username, PASSWORD)
        await bob.log_in(bob_account.username, PASSWORD)
        await alice.open_room(bob_account.username)
        await bob.open_room(alice_account.username)

        await choose_file(alice.window, "#attach", photo)
        await alice.window.click("#send")
        assert await loaded_image(bob.window, "#messages li[data-seq='1'] img.attachment") == 40

        await choose_file(alice.window, "#attach", notes)
        await alice.send("the list")
        await bob.wait_messages([(1, ""), (2, "the list")])
        link = await bob.window.element("#messages li[data-seq='2'] a.attachment")
        assert await bob.window.do(lambda _: link.get_attribute("download")) == "notes.txt"
        href = await bob.window.do(lambda _: link.get_attribute("href"))
        fetched = await bob.window.script("return fetch(arguments[0]).then(r => r.text())", href)
        assert fetched == "bring the tent\n"

        await alice.window.click("#account summary")
        await choose_file(alice.window, "#avatar-file", portrait)
        await alice.window.click("#set-avatar")
        assert await loaded_image(alice.window, "#my-avatar") == 20
        await alice.send("new picture")
        assert await loaded_image(bob.window, "#messages li[data-seq='3'] img.avatar") == 20
        assert await browser.run(browser.console_errors) == []
