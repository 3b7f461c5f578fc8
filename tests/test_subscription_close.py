"""A subscription resolver that is closed closes the stream it follows at once.

strawberry closes a subscription's resolver when its client stops it; if the stop
comes while an event's fields are being resolved, the resolver is closed at its
``yield``. The service's stream it was iterating must end then too (its ``finally``
unwatches the routes and lowers ``plop_subscriptions_active``), not when the
garbage collector gets to a generator left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from resolvers import friends, subscriptions
from services.presence import ONLINE, Presence


class Source:
    """A service stream that says when it ended."""

    def __init__(self) -> None:
        self.closed = False

    async def events(self, *_: Any) -> AsyncIterator[Any]:
        try:
            while True:
                yield Presence("u1", ONLINE, None)
        finally:
            self.closed = True


def info_for(source: Source) -> Any:
    streams = SimpleNamespace(
        room_added=source.events,
        room_updated=source.events,
        message_added=source.events,
        room_activity=source.events,
    )
    services = SimpleNamespace(
        streams=streams, presence=SimpleNamespace(friends_presence=source.events)
    )
    context = SimpleNamespace(viewer=object(), over_websocket=False, services=services)
    return SimpleNamespace(context=context, root_value=None)


@pytest.mark.parametrize(
    ("resolver", "arguments"),
    [
        (subscriptions.room_added, {}),
        (subscriptions.room_updated, {}),
        (subscriptions.message_added, {"room_id": "r"}),
        (subscriptions.room_activity, {"room_id": "r"}),
        (friends.presence_changed, {}),
    ],
)
async def test_closing_the_resolver_at_its_yield_ends_the_stream_at_once(
    resolver: Any, arguments: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the membership check nor the event's rendering is what this is about.
    async def member(*_: Any) -> tuple[object, object]:
        return object(), object()

    monkeypatch.setattr(subscriptions, "_require_member", member)
    monkeypatch.setattr(subscriptions, "Room", SimpleNamespace(from_doc=lambda doc: doc))
    monkeypatch.setattr(subscriptions, "Message", SimpleNamespace(from_data=lambda data: data))
    monkeypatch.setattr(subscriptions, "activity_of", lambda event: event)
    source = Source()
    generator = resolver(info_for(source), **arguments)
    assert await anext(generator) is not None  # the resolver is suspended at its yield
    await generator.aclose()
    assert source.closed, "the stream outlived its closed resolver"
