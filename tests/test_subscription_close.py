"""A subscription resolver that is closed closes the stream it follows at once.

strawberry closes a subscription's resolver when its client stops it; if the stop
comes while an event's fields are being resolved, the resolver is closed at its
``yield``. The service's stream it was iterating must end then too (its ``finally``
unwatches the routes and lowers ``plop_subscriptions_active``), not when the
garbage collector gets to a generator left behind.

messageAdded and roomActivity follow no stream of their own: they hand their room
to the socket's operation and end (``tests/test_shared_feeds.py`` drives them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import strawberry

from errors import BadUserInput, Forbidden
from resolvers import friend_fields, subscriptions
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
    room_lists = SimpleNamespace(room_added=source.events, room_updated=source.events)
    services = SimpleNamespace(
        room_lists=room_lists, presence=SimpleNamespace(friends_presence=source.events)
    )
    context = SimpleNamespace(
        viewer=SimpleNamespace(id="u1"), over_websocket=False, services=services
    )
    return SimpleNamespace(context=context, root_value=None)


@pytest.mark.parametrize(
    ("resolver", "arguments"),
    [
        (subscriptions.room_added, {}),
        (subscriptions.room_updated, {}),
        (friend_fields.presence_changed, {}),
    ],
)
async def test_closing_the_resolver_at_its_yield_ends_the_stream_at_once(
    resolver: Any, arguments: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The event's rendering is not what this is about.
    monkeypatch.setattr(subscriptions, "Room", SimpleNamespace(from_doc=lambda doc: doc))
    source = Source()
    generator = resolver(info_for(source), **arguments)
    assert await anext(generator) is not None  # the resolver is suspended at its yield
    await generator.aclose()
    assert source.closed, "the stream outlived its closed resolver"


class Socket:
    """Stands in for the socket's operation (``schema.live.LiveOperation``)."""

    def __init__(self) -> None:
        self.handed: list[tuple[str, str, str, int | None]] = []

    def follow_room(self, room_id: str, viewer_id: str, after_seq: int | None) -> None:
        self.handed.append(("messages", room_id, viewer_id, after_seq))

    def follow_activity(self, room_id: str, viewer_id: str) -> None:
        self.handed.append(("activity", room_id, viewer_id, None))

    def follow_account(self, stream: object, payload_of: object, token_of: object) -> None:
        self.handed.append(("account", "", "", None))


def handing_info(root_value: object, members: set[str]) -> Any:
    async def require_subscriber(room_id: Any, viewer_id: str) -> None:
        if viewer_id not in members:
            raise Forbidden("you are not a member of this room")

    services = SimpleNamespace(access=SimpleNamespace(require_subscriber=require_subscriber))
    context = SimpleNamespace(
        viewer=SimpleNamespace(id="u1"), over_websocket=False, services=services
    )
    return SimpleNamespace(context=context, root_value=root_value)


ROOM = strawberry.ID("65a000000000000000000001")


async def test_message_added_and_room_activity_hand_their_room_to_the_socket() -> None:
    socket = Socket()
    info = handing_info(socket, members={"u1"})
    assert [each async for each in subscriptions.message_added(info, ROOM, 7)] == []
    assert [each async for each in subscriptions.room_activity(info, ROOM)] == []
    assert socket.handed == [("messages", ROOM, "u1", 7), ("activity", ROOM, "u1", None)]


async def test_nothing_is_handed_to_the_socket_before_the_viewer_is_authorized() -> None:
    socket = Socket()
    with pytest.raises(Forbidden):
        await anext(subscriptions.message_added(handing_info(socket, members=set()), ROOM))
    with pytest.raises(BadUserInput):
        await anext(subscriptions.message_added(handing_info(socket, members={"u1"}), ROOM, -1))
    assert socket.handed == []


async def test_without_a_socket_a_room_subscription_is_refused() -> None:
    with pytest.raises(BadUserInput, match="WebSocket"):
        await anext(subscriptions.message_added(handing_info(None, members={"u1"}), ROOM))
