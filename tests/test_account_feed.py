"""The account feed (unit tests, no server): one rendering of an event for every
account stream that renders alike, each stream with its own token in it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

from live.account_cursor import Cursor
from live.account_feed import TOKEN_PLACEHOLDER, AccountRenderings, follow_account
from live.account_stream import AccountStream, Given, LeftRoom


async def test_streams_that_render_alike_share_one_rendering_of_an_event() -> None:
    renderings: AccountRenderings[object] = AccountRenderings()
    event, other = LeftRoom("r1"), LeftRoom("r1")  # equal, but two events
    made: list[object] = []
    gate = asyncio.Event()

    async def render_of(item: object) -> str:
        made.append(item)
        await gate.wait()
        return f'{{"token":"{TOKEN_PLACEHOLDER}"}}'

    together = asyncio.gather(
        renderings.rendered("k", event, lambda: render_of(event)),
        renderings.rendered("k", event, lambda: render_of(event)),
        renderings.rendered("k", other, lambda: render_of(other)),
        renderings.rendered("another key", event, lambda: render_of(event)),
    )
    await asyncio.sleep(0)
    gate.set()
    await together
    # One rendering per share key and event, however many streams ask.
    assert [item is event for item in made].count(True) == 2
    assert [item is other for item in made].count(True) == 1


async def test_only_recent_renderings_are_kept() -> None:
    renderings: AccountRenderings[object] = AccountRenderings(renderings=2)
    events = [LeftRoom(f"r{n}") for n in range(3)]
    made: list[object] = []

    async def render_of(item: object) -> str:
        made.append(item)
        return "x"

    for each in [*events, events[0]]:
        await renderings.rendered("k", each, lambda each=each: render_of(each))  # type: ignore[misc]
    assert made == [*events, events[0]]  # the first was forgotten, so made again


class Stream:
    def __init__(self, given: list[Given]) -> None:
        self.given = given
        self.closed = False

    async def items(self) -> AsyncIterator[Given]:
        try:
            for each in self.given:
                yield each
            await asyncio.Event().wait()
        finally:
            self.closed = True


class Sink:
    def __init__(self, takes: int) -> None:
        self.takes = takes
        self.payloads: list[str] = []

    def deliver(self, payload: str) -> bool:
        if len(self.payloads) >= self.takes:
            return False
        self.payloads.append(payload)
        return True


async def test_each_stream_gets_the_shared_rendering_with_its_own_token() -> None:
    given = [Given(LeftRoom(f"r{n}"), Cursor(upto=n, at=0.0)) for n in range(1, 5)]
    stream = Stream(given)

    async def rendered(each: Given) -> str | None:
        if each.cursor.upto == 2:
            return None  # nothing left to show: skipped
        return f'{{"token":"{TOKEN_PLACEHOLDER}","n":{each.cursor.upto}}}'

    async def token_of(each: Given) -> str:
        return f"t{each.cursor.upto}"

    sink = Sink(takes=2)
    await follow_account(cast(AccountStream, stream), rendered, token_of, sink)
    assert sink.payloads == ['{"token":"t1","n":1}', '{"token":"t3","n":3}']
    assert stream.closed, "the stream outlived a sink that took no more"


def test_the_placeholder_survives_json_as_it_is() -> None:
    import json

    assert json.dumps({"token": TOKEN_PLACEHOLDER}) == f'{{"token": "{TOKEN_PLACEHOLDER}"}}'
    assert TOKEN_PLACEHOLDER.replace("-", "").isalnum()
