"""GraphiQL and the chat page in a real browser (Debian's headless Chromium).

One browser serves the whole run; each test opens windows of its own (each a web
session) and, when it fails, leaves a screenshot of each under its tmp_path.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.conftest import RUN_ID
from tests.support.accounts import log_in
from tests.support.browser import (
    Browser,
    non_loopback,
    requested_urls,
    websocket_subprotocols,
)
from tests.support.chat import (
    CREATE_GROUP,
    HISTORY,
    ROOM,
    SEND_FRIEND_REQUEST,
    as_user,
    direct_room,
    group_room,
    invitations,
    send,
)
from tests.support.clients import (
    active_subscriptions,
    call,
    error_code,
    http_session,
    sign_up,
    unique_name,
    wait_active_subscriptions,
)
from tests.support.pages import ChatPage, GraphiQLPage
from tests.support.server import ServerProcess

PASSWORD = "correct horse battery"  # the password tests.support.clients.sign_up uses
# A message sent in one window must show in the other within this (the product's promise).
LIVE_WITHIN_SECONDS = 2.0
HISTORY_MESSAGES = 40  # more than the page's first page of 30


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Chromium for the whole run (scripts/browser.sh installs it; missing, this fails)."""
    chromium = Browser()
    yield chromium
    chromium.quit()


@pytest_asyncio.fixture(loop_scope="session")
async def restartable_server(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """A server of this test's own on the real services, so that it can be restarted."""
    server = ServerProcess(f"{RUN_ID}-web-restart", {**real_env, "PLOP_INSTANCE_ID": "web"})
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# ---- GraphiQL ----------------------------------------------------------------------


async def test_graphiql_renders_and_loads_the_schema_with_no_request_leaving_the_machine(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    await browser.run(browser.requested_urls)  # forget what came before
    async with browser.windows(tmp_path) as windows:
        page = GraphiQLPage(await windows.open(server_a.http_url))
        await page.wait_rendered()
        await page.wait_schema_loaded()
        urls = await browser.run(browser.requested_urls)
        errors = await browser.run(browser.console_errors)
    assert f"{server_a.base_url}/web/vendor/graphiql/graphiql.min.js" in urls
    assert non_loopback(urls) == []
    assert errors == []  # among them what the Content-Security-Policy refused


async def test_graphiql_runs_a_query_with_the_token_of_the_headers_tab_kept_in_memory_only(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice = await sign_up(server_a, "alice")
    async with browser.windows(tmp_path) as windows:
        page = GraphiQLPage(await windows.open(server_a.http_url))
        await page.wait_rendered()
        await page.set_headers({"Authorization": f"Bearer {alice.token}"})
        # GraphiQL stores an edit after a debounce: once this later edit of the query
        # is stored, the headers' edit would have been too, had it been kept.
        await page.set_query("{ me { id } }")
        await page.run()
        response = await page.wait_response_containing(alice.id)
        await page.window.reload()
        await page.wait_rendered()
        stored = await page.window.script(STORAGE_SCRIPT)
        editors = await page.window.script(
            "return [...document.querySelectorAll('.graphiql-editor-tool .CodeMirror')]"
            ".map(e => e.CodeMirror.getValue()).join(' ')"
        )
    assert json.loads(response) == {"data": {"me": {"id": alice.id}}}
    assert "graphiql:query" in stored["local"], stored  # the page's storage was read
    for kind, entries in stored.items():
        for key, value in entries.items():
            assert alice.token not in value, f"{kind}Storage {key!r} keeps the token"
    assert alice.token not in editors  # nor does the reloaded page show it


async def test_graphiql_subscription_receives_a_message_another_user_sends(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice = await sign_up(server_a, "alice")
    bob = await sign_up(server_a, "bob")
    room_id = await direct_room(server_a, alice, bob)
    async with browser.windows(tmp_path) as windows:
        page = GraphiQLPage(await windows.open(server_a.http_url))
        await page.wait_rendered()
        # Only the Headers tab carries the token: the socket's connection_init gets it.
        await page.set_headers({"Authorization": f"Bearer {alice.token}"})
        selection = "seq text sender { username }"
        await page.set_query(
            f'subscription {{ messageAdded(roomId: "{room_id}") {{ {selection} }} }}'
        )
        before = await active_subscriptions(server_a)
        await browser.run(browser.requested_urls)  # forget what came before
        await page.run()
        await wait_active_subscriptions(server_a, before + 1)
        await send(server_a, bob, room_id, "live from bob")
        response = await page.wait_response_containing("live from bob")
        events = await browser.run(browser.network_events)
    # Over one WebSocket, not over HTTP.
    assert requested_urls(events) == [server_a.ws_url]
    assert websocket_subprotocols(events) == ["graphql-transport-ws"]
    assert json.loads(response)["data"]["messageAdded"] == {
        "seq": 1,
        "text": "live from bob",
        "sender": {"username": bob.username},
    }


# Every entry of the page's localStorage and sessionStorage.
STORAGE_SCRIPT = (
    "const all = (s) => Object.fromEntries([...Array(s.length).keys()]"
    ".map(i => [s.key(i), s.getItem(s.key(i))]));"
    " return {local: all(localStorage), session: all(sessionStorage)}"
)


# ---- the chat page -----------------------------------------------------------------


async def test_the_chat_page_shows_the_username_beside_each_display_name(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    """Mallory takes Bob's display name; the page still tells them apart."""
    alice = await sign_up(server_a, "alice")
    bob = await sign_up(server_a, "bob", display_name="Bob Builder")
    mallory = await sign_up(server_a, "mallory", display_name="Bob Builder")
    await as_user(server_a, mallory, SEND_FRIEND_REQUEST, u=alice.id)
    room_id = await direct_room(server_a, mallory, alice)
    await send(server_a, mallory, room_id, "it's me, Bob")
    await direct_room(server_a, bob, alice)
    handle = f"@{mallory.username}"
    room = f"#rooms li[data-room-id='{room_id}']"
    async with browser.windows(tmp_path) as windows:
        page = ChatPage(await windows.open(server_a.base_url))
        await page.log_in(alice.username, PASSWORD)

        def shown(css: str) -> str:
            return (
                f"return [...document.querySelectorAll({json.dumps(css)})].map(e => e.textContent)"
            )

        await page.window.wait_value(
            shown("#requests li[data-request-id] .handle"),
            lambda handles: handles == [handle],
            "the friend request shows mallory's username",
        )
        rooms = await page.window.wait_value(
            shown(f"{room} .handle, {room} .preview"),
            lambda texts: len(texts) == 2,
            "mallory's room shows a username and a preview",
        )
        assert rooms == [handle, f"Bob Builder ({handle}): it's me, Bob"]
        await page.window.script(f"document.querySelector({json.dumps(room)}).click()")
        await page.wait_messages([(1, "it's me, Bob")])
        assert await page.window.texts("#messages li[data-seq] .handle") == [handle]
        assert await page.window.texts("#room-title .handle") == [handle]
        assert set(await page.window.texts("#rooms li[data-room-id] .handle")) == {
            handle,
            f"@{bob.username}",
        }


async def test_two_people_chat_live_and_a_reload_shows_the_history(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice_name, bob_name = unique_name("alice"), unique_name("bob")
    await browser.run(browser.console_errors)  # forget what came before
    async with browser.windows(tmp_path) as windows:
        alice = ChatPage(await windows.open(server_a.base_url))
        bob = ChatPage(await windows.open(server_a.base_url))
        await alice.sign_up(alice_name, PASSWORD)
        await bob.sign_up(bob_name, PASSWORD)

        await alice.search(bob_name)
        await alice.click_button("#search-results", "Add friend")
        await alice.click_button("#search-results", "Chat")
        await alice.window.element("#composer")
        await alice.send("hello bob")
        await alice.wait_messages([(1, "hello bob")])

        # Bob's room list learnt of the new room and its unread message by his events.
        await bob.wait_unread(alice_name, 1)
        await bob.open_room(alice_name)
        await bob.wait_messages([(1, "hello bob")])
        await bob.wait_unread(alice_name, 0)

        sent_at = time.monotonic()
        await alice.send("are you there?")
        await bob.wait_messages(
            [(1, "hello bob"), (2, "are you there?")], within=LIVE_WITHIN_SECONDS
        )
        assert time.monotonic() - sent_at < LIVE_WITHIN_SECONDS

        # Typing and edits reach the other window live, through its events.
        await alice.window.type("#text", "one moment")
        await bob.window.wait_value(
            "return document.getElementById('typing').textContent",
            lambda shown: shown == f"{alice_name} (@{alice_name}) is typing…",
            "alice is typing",
        )
        await edit_last_message(server_a, alice_name, "are you there now?")
        await bob.wait_messages([(1, "hello bob"), (2, "are you there now?")])
        await bob.window.element("#messages li[data-seq='2'] .edited")

        await bob.window.reload()
        await bob.window.element("#connection[data-state='live']")
        await bob.click_button("#requests", "Accept")
        # Alice has the page open, so she is online; her dot says so.
        await bob.window.wait_value(
            "const li = document.querySelector('#friends li[data-user-id]');"
            " return li ? li.querySelector('.dot').dataset.status : null",
            lambda status: status == "ONLINE",
            "alice is an online friend",
        )
        await bob.open_room(alice_name)
        await bob.wait_messages([(1, "hello bob"), (2, "are you there now?")])
        assert await browser.run(browser.console_errors) == []


async def test_a_group_invitation_is_joined_or_declined_from_the_chat_page(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    bob, alice, carol = [await sign_up(server_a, name) for name in ("bob", "alice", "carol")]
    club = await as_user(server_a, alice, CREATE_GROUP, t="Book club", m=[bob.id])
    club_id = club["createGroupRoom"]["id"]
    await send(server_a, alice, club_id, "welcome")
    await as_user(server_a, carol, CREATE_GROUP, t="Spam", m=[bob.id])
    pending = {item["room"]["title"]: item["id"] for item in await invitations(server_a, bob)}
    names = "return [...document.querySelectorAll('#invitations li .name')].map(e => e.textContent)"
    async with browser.windows(tmp_path) as windows:
        page = ChatPage(await windows.open(server_a.base_url))
        await page.log_in(bob.username, PASSWORD)
        await page.window.wait_value(
            names, lambda shown: shown == ["Spam", "Book club"], "both invitations, newest first"
        )
        assert await page.window.texts("#rooms li[data-room-id]") == []
        invitation = "#invitations li[data-invitation-id='{}']"
        await page.click_button(invitation.format(pending["Spam"]), "Decline")
        await page.click_button(invitation.format(pending["Book club"]), "Join")
        await page.window.wait_value(
            "return document.getElementById('invitations-title').hidden",
            bool,
            "no invitation left",
        )
        await page.open_room("Book club")
        await page.wait_messages([(1, "welcome")])
    assert await invitations(server_a, bob) == []
    room = (await as_user(server_a, bob, ROOM, r=club_id))["room"]
    assert {member["id"] for member in room["members"]} == {alice.id, bob.id}
    async with http_session(server_a, carol.token) as session:  # declined: held back
        code = await error_code(session, CREATE_GROUP, t="Spam again", m=[bob.id])
    assert code == "RATE_LIMITED"


async def edit_last_message(server: ServerProcess, username: str, text: str) -> None:
    """Edits the newest message of the user's first room, over HTTP as that user."""
    async with http_session(server) as session:
        log_in = (
            "mutation($u: String!, $p: String!) { logIn(username: $u, password: $p) { token } }"
        )
        token = (await call(session, log_in, u=username, p=PASSWORD))["logIn"]["token"]
    async with http_session(server, token) as session:
        rooms = await call(session, "{ rooms(first: 1) { edges { node { id } } } }")
        room_id = rooms["rooms"]["edges"][0]["node"]["id"]
        newest = await call(
            session,
            "query($r: ID!) { messages(roomId: $r, last: 1) { edges { node { id } } } }",
            r=room_id,
        )
        message_id = newest["messages"]["edges"][0]["node"]["id"]
        edit = "mutation($m: ID!, $t: String!) { editMessage(messageId: $m, text: $t) { id } }"
        await call(session, edit, m=message_id, t=text)


async def test_scrolling_up_loads_older_messages(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice = await sign_up(server_a, "alice")
    bob = await sign_up(server_a, "bob")
    room_id = await direct_room(server_a, alice, bob)
    for number in range(1, HISTORY_MESSAGES + 1):
        await send(server_a, bob, room_id, f"m{number}")
    everything = [(number, f"m{number}") for number in range(1, HISTORY_MESSAGES + 1)]
    async with browser.windows(tmp_path) as windows:
        page = ChatPage(await windows.open(server_a.base_url))
        await page.log_in(alice.username, PASSWORD)
        await page.open_room(bob.display_name)
        await page.wait_messages(everything[-30:])
        await page.window.script("document.getElementById('messages').scrollTop = 0")
        await page.wait_messages(everything)


async def test_a_server_restart_is_resumed_without_gaps(
    browser: Browser,
    restartable_server: ServerProcess,
    server_b: ServerProcess,
    tmp_path: Path,
) -> None:
    server = restartable_server
    alice = await sign_up(server, "alice")
    bob = await sign_up(server, "bob")
    room_id = await direct_room(server, alice, bob)
    await send(server, bob, room_id, "before")
    async with browser.windows(tmp_path) as windows:
        page = ChatPage(await windows.open(server.base_url))
        await page.log_in(alice.username, PASSWORD)
        await page.open_room(bob.display_name)
        await page.wait_messages([(1, "before")])
        await send(server, bob, room_id, "live")
        await page.wait_messages([(1, "before"), (2, "live")])

        await server.stop()
        await page.window.element("#connection[data-state='reconnecting']")
        # Sent through another instance while this one is down: only a resume from
        # the page's last event token can bring these to the page.
        await send(server_b, bob, room_id, "while down 1")
        await send(server_b, bob, room_id, "while down 2")
        await server.start()

        resumed = [(1, "before"), (2, "live"), (3, "while down 1"), (4, "while down 2")]
        await page.wait_messages(resumed)
        await page.window.element("#connection[data-state='live']")
        await send(server, bob, room_id, "after")
        await page.wait_messages([*resumed, (5, "after")])


MEMBERS_SCRIPT = (
    "return [...document.querySelectorAll('#group-members li[data-user-id]')]"
    ".map(li => [li.querySelector('.handle').textContent, li.querySelector('.role').textContent,"
    " [...li.querySelectorAll('button')].map(b => b.textContent)])"
)


async def wait_members(page: ChatPage, expected: list[list[object]], what: str) -> None:
    """Waits until the group panel lists these (handle, role, buttons), oldest first."""
    await page.window.wait_value(MEMBERS_SCRIPT, lambda shown: shown == expected, what)


async def test_the_group_panel_follows_roles_renames_removals_and_a_leave_live(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice = await sign_up(server_a, "alice")
    bob = await sign_up(server_a, "bob")
    carol = await sign_up(server_a, "carol")
    title = unique_name("team")
    room_id = await group_room(server_a, alice, [bob, carol], title=title)
    a, b, c = (f"@{user.username}" for user in (alice, bob, carol))
    owner_buttons = ["remove", "make admin", "make owner"]
    async with browser.windows(tmp_path) as windows:
        owner = ChatPage(await windows.open(server_a.base_url))
        member = ChatPage(await windows.open(server_a.base_url))
        for page, account in ((owner, alice), (member, bob)):
            await page.log_in(account.username, PASSWORD)
            await page.open_room(title)
            await page.window.click("#group summary")
        await wait_members(
            owner,
            [[a, "OWNER", []], [b, "MEMBER", owner_buttons], [c, "MEMBER", owner_buttons]],
            "the owner may remove and give roles to both others",
        )
        await wait_members(
            member,
            [[a, "OWNER", []], [b, "MEMBER", []], [c, "MEMBER", []]],
            "a member may do nothing to anyone",
        )
        assert not await member.window.script(
            "return !document.getElementById('group-rename').hidden"
        )

        # Made an admin, Bob may remove Carol (a member) and rename, live.
        await owner.click_button(f"#group-members li[data-user-id='{bob.id}']", "make admin")
        await wait_members(
            member,
            [[a, "OWNER", []], [b, "ADMIN", []], [c, "MEMBER", ["remove"]]],
            "an admin may remove members only",
        )
        await member.window.type("#group-title", "Crew")
        await member.window.click("#group-rename button")
        await owner.window.wait_value(
            "return document.getElementById('room-title').textContent",
            lambda shown: shown == "Crew",
            "the owner sees the new title",
        )
        await owner.click_button(f"#group-members li[data-user-id='{carol.id}']", "remove")
        await wait_members(
            member, [[a, "OWNER", []], [b, "ADMIN", []]], "the admin sees Carol removed"
        )

        # Bob leaves: the room goes from his list; Alice sees him gone.
        await member.click_button("#group", "Leave group")
        await member.window.wait_value(
            f"return !document.querySelector(\"#rooms li[data-room-id='{room_id}']\")",
            bool,
            "the room left the list",
        )
        await wait_members(owner, [[a, "OWNER", []]], "the owner sees Bob gone")
    async with http_session(server_a, carol.token) as session:
        assert await error_code(session, HISTORY, r=room_id) == "FORBIDDEN"


# ---- the account panel -----------------------------------------------------------

SESSION_ROWS = (
    "return [...document.querySelectorAll('#sessions li[data-session-id]')]"
    ".map(li => [li.dataset.current, li.querySelector('.agent').textContent])"
)


async def test_the_account_panel_ends_a_session_changes_the_password_and_deletes_the_account(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice, bob = await sign_up(server_a, "alice"), await sign_up(server_a, "bob")
    phone = await log_in(server_a, alice, user_agent="PlopPhone/1.0")
    new_password = "a new horse battery"
    async with browser.windows(tmp_path) as windows:
        page = ChatPage(await windows.open(server_a.base_url))
        await page.log_in(alice.username, PASSWORD)
        await page.window.click("#account summary")
        rows = await page.window.wait_value(
            SESSION_ROWS, lambda rows: len(rows) == 3, "the three sessions listed"
        )
        assert rows[0][0] == "true" and "Chrome" in rows[0][1]  # the page's own, newest
        assert ["false", "PlopPhone/1.0"] in rows

        await page.window.script(
            "[...document.querySelectorAll('#sessions li')]"
            ".find(li => li.querySelector('.agent').textContent === 'PlopPhone/1.0')"
            ".querySelector('button').click()"
        )
        await page.window.wait_value(SESSION_ROWS, lambda rows: len(rows) == 2, "two left")
        async with http_session(server_a, phone.token) as session:
            assert await error_code(session, "{ me { id } }") == "UNAUTHENTICATED"

        await page.window.type("#current-password", PASSWORD)
        await page.window.type("#new-password", new_password)
        await page.window.click("#change-password")
        await page.window.wait_value(
            "return document.getElementById('account-status').textContent",
            lambda text: text.startswith("Password changed"),
            "the page says the password changed",
        )
        rows = await page.window.wait_value(SESSION_ROWS, lambda rows: len(rows) == 1, "one")
        assert rows[0][0] == "true"
        async with http_session(server_a, alice.token) as session:
            assert await error_code(session, "{ me { id } }") == "UNAUTHENTICATED"
        await log_in(server_a, alice, password=new_password)

        await page.window.type("#delete-password", new_password)
        await page.window.click("#delete-confirm")
        await page.window.click("#delete-account")
        await page.window.element("#auth")
        await page.window.wait_value(
            "return document.getElementById('auth-error').textContent",
            lambda text: text == "Your account was deleted.",
            "the page says the account was deleted",
        )
    shown = await as_user(server_a, bob, "query($u: ID!) { user(id: $u) { deleted } }", u=alice.id)
    assert shown["user"]["deleted"] is True


RESULTS = (
    "return [...document.querySelectorAll('#message-results li[data-message-id]')]"
    ".map(li => [li.dataset.roomId, li.querySelector('.text').textContent])"
)


async def test_the_search_box_lists_matches_and_a_click_opens_the_messages_room(
    browser: Browser, server_a: ServerProcess, tmp_path: Path
) -> None:
    alice = await sign_up(server_a, "alice")
    bob = await sign_up(server_a, "bob", display_name="Bob")
    carol = await sign_up(server_a, "carol", display_name="Carol")
    with_bob = await direct_room(server_a, alice, bob)
    with_carol = await direct_room(server_a, alice, carol)
    word = f"w{secrets.token_hex(4)}"
    await send(server_a, carol, with_carol, f"Déjà vu {word}")
    for index in range(HISTORY_MESSAGES):  # the match is older than the first page
        await send(server_a, carol, with_carol, f"filler {index}")
    await send(server_a, bob, with_bob, f"deja VU again {word}")
    async with browser.windows(tmp_path) as windows:
        page = ChatPage(await windows.open(server_a.base_url))
        await page.log_in(alice.username, PASSWORD)
        await page.window.type("#message-search", f"DEJA {word}\n")
        found = await page.window.wait_value(RESULTS, lambda rows: len(rows) == 2, "2 results")
        assert found == [[with_bob, f"deja VU again {word}"], [with_carol, f"Déjà vu {word}"]]
        await page.window.script(
            "document.querySelector('#message-results li[data-message-id]').click()"
        )
        await page.window.element("#messages li.found[data-seq='1']")
        assert await page.window.texts("#room-title .handle") == [f"@{bob.username}"]
        await page.window.script(
            "document.querySelectorAll('#message-results li[data-message-id]')[1].click()"
        )
        # Carol's room opens at its newest messages; older pages load until the
        # match, its first message, shows.
        await page.window.element("#messages li.found[data-seq='1']")
        assert await page.window.texts("#room-title .handle") == [f"@{carol.username}"]
        assert await page.window.texts("#messages li.found .text") == [f"Déjà vu {word}"]

        await page.window.type("#message-search", f"nothing {word}\n")
        await page.window.wait_value(
            "return document.getElementById('message-results').textContent",
            lambda text: text == "No message has all of these words.",
            "the page says nothing matched",
        )
        await page.window.type("#message-search", "?!\n")
        await page.window.wait_value(
            "return document.getElementById('message-results').textContent",
            lambda text: text.startswith("query must contain a word"),
            "the page shows the server's refusal",
        )
