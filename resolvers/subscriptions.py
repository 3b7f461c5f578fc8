"""messageAdded, roomAdded, roomUpdated, roomActivity: authorize once at subscribe, then stream.

Over a WebSocket, messageAdded and roomActivity hand the room to their operation
(``schema.live.LiveOperation``), which joins the room's shared feed when the
selection can share: the feed then writes to the socket itself and this resolver
only waits; it never yields. Elsewhere each message (or activity) is yielded.

Each resolver closes the stream it follows as soon as it is closed itself (a stop,
a closed socket): the stream's watch of its routes ends then, not whenever the
garbage collector finalizes a generator left behind in the middle of an event.

Membership is read through ``StreamService.subscribable_room``: the same check as
``require_member``, with the reads of sockets subscribing at once batched.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from models import RoomDoc, UserDoc
from resolvers.access import require_viewer
from schema.context import Info
from schema.live import LiveOperation
from schema.types import Message, Room, RoomActivity, activity_of
from services.ids import parse_id


async def _require_member(info: Info, room_id: strawberry.ID) -> tuple[UserDoc, RoomDoc]:
    """The viewer and the room; NOT_FOUND or FORBIDDEN unless the viewer is in it."""
    viewer = await require_viewer(info)
    room = await info.context.services.streams.subscribable_room(
        parse_id(room_id, "roomId"), viewer
    )
    return viewer, room


async def message_added(
    info: Info, room_id: strawberry.ID, after_seq: int | None = None
) -> AsyncGenerator[Message, None]:
    viewer, room = await _require_member(info, room_id)
    live = info.root_value
    if isinstance(live, LiveOperation) and await live.follow_room(room, viewer, after_seq):
        return
    async with aclosing(
        info.context.services.streams.message_added(room, viewer, after_seq)
    ) as data:
        async for each in data:
            yield Message.from_data(each)


async def room_added(info: Info) -> AsyncGenerator[Room, None]:
    viewer = await require_viewer(info)
    async with aclosing(info.context.services.streams.room_added(viewer)) as rooms:
        async for room in rooms:
            yield Room.from_doc(room)


async def room_updated(info: Info) -> AsyncGenerator[Room, None]:
    viewer = await require_viewer(info)
    async with aclosing(info.context.services.streams.room_updated(viewer)) as rooms:
        async for room in rooms:
            yield Room.from_doc(room)


async def room_activity(info: Info, room_id: strawberry.ID) -> AsyncGenerator[RoomActivity, None]:
    viewer, room = await _require_member(info, room_id)
    live = info.root_value
    if isinstance(live, LiveOperation) and await live.follow_activity(room, viewer):
        return
    async with aclosing(info.context.services.streams.room_activity(room, viewer)) as events:
        async for event in events:
            yield activity_of(event)
