"""The two web pages as a person uses them: GraphiQL at /graphql and the chat at /."""

from __future__ import annotations

import json

from tests.support.browser import WAIT_SECONDS, Window

QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
# The editor tool (Variables or Headers) that is shown.
SHOWN_TOOL_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
RESPONSE = ".result-window .CodeMirror"


class GraphiQLPage:
    """GraphiQL's editors are CodeMirror instances: text is set and read through them."""

    def __init__(self, window: Window) -> None:
        self.window = window

    async def wait_rendered(self) -> None:
        await self.window.element(QUERY_EDITOR)

    async def _set_editor(self, css: str, text: str) -> None:
        await self.window.element(css)
        await self.window.script(
            "document.querySelector(arguments[0]).CodeMirror.setValue(arguments[1])", css, text
        )

    async def set_query(self, query: str) -> None:
        await self._set_editor(QUERY_EDITOR, query)
        # GraphiQL reads an edit's operation name after a short debounce, then stores
        # the query: until then a run would send the previous operation's name.
        await self.window.wait_value(
            "return localStorage.getItem('graphiql:query')",
            lambda stored: stored == query,
            "GraphiQL took in the query",
        )

    async def set_headers(self, headers: dict[str, str]) -> None:
        """Types the headers into the Headers tab, as a person would paste them."""
        await self.window.script(
            "[...document.querySelectorAll('button')]"
            ".find(b => b.textContent.trim() === 'Headers').click()"
        )
        await self._set_editor(SHOWN_TOOL_EDITOR, json.dumps(headers))

    async def run(self) -> None:
        await self.window.click(".graphiql-execute-button")

    async def wait_response_containing(self, text: str, within: float = WAIT_SECONDS) -> str:
        script = (
            f"const e = document.querySelector({json.dumps(RESPONSE)});"
            " return e ? e.CodeMirror.getValue() : ''"
        )
        found: str = await self.window.wait_value(
            script, lambda value: text in value, f"the response shows {text!r}", within
        )
        return found

    async def wait_schema_loaded(self) -> None:
        """Opens the documentation explorer, which lists the root types once the
        schema came in by introspection."""
        await self.window.click("button[aria-label='Show Documentation Explorer']")
        await self.window.wait_value(
            "const e = document.querySelector('.graphiql-doc-explorer');"
            " return e ? e.textContent : ''",
            lambda text: "Query" in text and "Subscription" in text,
            "the documentation explorer lists the root types",
        )


class ChatPage:
    """The chat page; each window is one signed-in person."""

    def __init__(self, window: Window) -> None:
        self.window = window

    async def _authenticate(self, button: str, username: str, password: str) -> None:
        await self.window.type("#username", username)
        await self.window.type("#password", password)
        await self.window.click(button)
        await self.window.element("#connection[data-state='live']")

    async def sign_up(self, username: str, password: str) -> None:
        await self._authenticate("#sign-up", username, password)

    async def log_in(self, username: str, password: str) -> None:
        await self._authenticate("#log-in", username, password)

    async def search(self, name: str) -> None:
        await self.window.type("#search", name + "\n")
        await self.window.element("#search-results li[data-user-id]")

    async def click_button(self, container: str, label: str) -> None:
        """Clicks the first button of container whose label is label, once there is one."""
        script = (
            f"const b = [...document.querySelectorAll({json.dumps(container + ' button')})]"
            f".find(b => b.textContent === {json.dumps(label)} && !b.disabled);"
            " if (b) { b.click(); return true; } return false"
        )
        await self.window.wait_value(script, bool, f"a {label!r} button in {container}")

    async def open_room(self, name: str) -> None:
        script = (
            "const li = [...document.querySelectorAll('#rooms li[data-room-id]')]"
            f".find(li => li.querySelector('.name').textContent === {json.dumps(name)});"
            " if (li) { li.click(); return true; } return false"
        )
        await self.window.wait_value(script, bool, f"a room named {name!r}")
        await self.window.element("#composer")

    async def send(self, text: str) -> None:
        await self.window.type("#text", text + "\n")

    async def rooms(self) -> dict[str, int]:
        """Unread counts by room name, as the room list shows them."""
        found: dict[str, int] = await self.window.script(
            "return Object.fromEntries([...document.querySelectorAll('#rooms li[data-room-id]')]"
            ".map(li => [li.querySelector('.name').textContent,"
            " Number(li.querySelector('.unread').dataset.count)]))"
        )
        return found

    async def wait_unread(self, name: str, count: int) -> None:
        script = (
            "const li = [...document.querySelectorAll('#rooms li[data-room-id]')]"
            f".find(li => li.querySelector('.name').textContent === {json.dumps(name)});"
            " return li ? Number(li.querySelector('.unread').dataset.count) : null"
        )
        await self.window.wait_value(
            script, lambda value: value == count, f"room {name!r} shows {count} unread"
        )

    async def messages(self) -> list[tuple[int, str]]:
        """(seq, text) of every message shown, top to bottom."""
        found: list[list[object]] = await self.window.script(MESSAGES_SCRIPT)
        return [(int(str(seq)), str(text)) for seq, text in found]

    async def wait_messages(
        self, expected: list[tuple[int, str]], within: float = WAIT_SECONDS
    ) -> None:
        """Waits until the room shows exactly these messages, in this order."""
        wanted = [[seq, text] for seq, text in expected]
        await self.window.wait_value(
            MESSAGES_SCRIPT,
            lambda shown: shown == wanted,
            f"the room shows {len(expected)} messages, ending {expected[-1:]}",
            within,
        )

    async def friend_status(self, name: str) -> str | None:
        script = (
            "const li = [...document.querySelectorAll('#friends li[data-user-id]')]"
            f".find(li => li.querySelector('.name').textContent === {json.dumps(name)});"
            " return li ? li.querySelector('.dot').dataset.status : null"
        )
        status: str | None = await self.window.script(script)
        return status


MESSAGES_SCRIPT = (
    "return [...document.querySelectorAll('#messages li[data-seq]')]"
    ".map(li => [Number(li.dataset.seq), li.querySelector('.text').textContent])"
)
