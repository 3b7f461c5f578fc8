"""messageAdded, roomAdded, roomUpdated: authorize once at subscribe, then stream.

messageAdded over a WebSocket joins the room's shared feed when its selection can
share (``schema.shared_execution``): the feed then writes to the socket itself and
this resolver only waits; it never yields. Elsewhere each message is yielded.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers.access import require_member, require_viewer
from schema.context import Info
from schema.shared_execution import LIVE_OPERATION, shared_selection
from schema.types import Message, Room


async def message_added(
    info: Info, room_id: strawberry.ID, after_seq: int | None = None
) -> AsyncGenerator[Message, None]:
    viewer, room = await require_member(info, room_id)
    live = LIVE_OPERATION.get()
    shared = (
        shared_selection(info.schema._schema, live, info.context, Message.from_data)
        if live
        else None
    )
    if live and shared:
        await info.context.services.room_feeds.follow(
            room, viewer, after_seq, shared.key, shared.make_render, live.sink
        )
        return
    async for data in info.context.services.streams.message_added(room, viewer, after_seq):
        yield Message.from_data(data)


async def room_added(info: Info) -> AsyncGenerator[Room, None]:
    viewer = await require_viewer(info)
    async for room in info.context.services.streams.room_added(viewer):
        yield Room.from_doc(room)


async def room_updated(info: Info) -> AsyncGenerator[Room, None]:
    viewer = await require_viewer(info)
    async for room in info.context.services.streams.room_updated(viewer):
        yield Room.from_doc(room)
