"""messageAdded, roomAdded, roomUpdated, roomActivity: authorize once at subscribe, then stream.

messageAdded and roomActivity hand their room to the WebSocket operation they run
in (``schema.live.LiveOperation``), which follows the room's shared feed once this
resolver has returned: the feed writes to the socket itself, and these resolvers
never yield. Membership is read through ``RoomAccess.require_subscriber``: the
same check as ``require_member``, with the reads of sockets subscribing at once
batched.

roomAdded and roomUpdated yield each room (``live.room_lists``); each closes the
stream it follows as soon as it is closed itself (a stop, a closed socket), so the
stream's watch of its routes ends then, not whenever the garbage collector
finalizes a generator left behind in the middle of an event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from errors import BadUserInput
from live.room_feeds import checked_after_seq
from resolvers.access import require_viewer
from schema.context import Info
from schema.live import LiveOperation
from schema.types import Message, Room, RoomActivity
from services.ids import parse_id

OVER_WEBSOCKET_ONLY = "subscriptions are served over WebSocket only"


async def _handed_to_socket(info: Info, room_id: strawberry.ID) -> tuple[LiveOperation, str, str]:
    """The socket's operation, the room and the viewer, once the viewer may follow
    the room: NOT_FOUND or FORBIDDEN unless they are in it."""
    viewer = await require_viewer(info)
    room = parse_id(room_id, "roomId")
    await info.context.services.access.require_subscriber(room, str(viewer.id))
    live = info.root_value
    if not isinstance(live, LiveOperation):
        raise BadUserInput(OVER_WEBSOCKET_ONLY)
    return live, str(room), str(viewer.id)


async def message_added(
    info: Info, room_id: strawberry.ID, after_seq: int | None = None
) -> AsyncGenerator[Message, None]:
    live, room, viewer = await _handed_to_socket(info, room_id)
    checked_after_seq(after_seq)
    live.follow_room(room, viewer, after_seq)
    handed: tuple[Message, ...] = ()  # nothing to yield: the socket delivers
    for message in handed:
        yield message


async def room_activity(info: Info, room_id: strawberry.ID) -> AsyncGenerator[RoomActivity, None]:
    live, room, viewer = await _handed_to_socket(info, room_id)
    live.follow_activity(room, viewer)
    handed: tuple[RoomActivity, ...] = ()  # nothing to yield: the socket delivers
    for event in handed:
        yield event


async def room_added(info: Info) -> AsyncGenerator[Room, None]:
    viewer = await require_viewer(info)
    async with aclosing(info.context.services.room_lists.room_added(str(viewer.id))) as rooms:
        async for room in rooms:
            yield Room.from_doc(room)


async def room_updated(info: Info) -> AsyncGenerator[Room, None]:
    viewer = await require_viewer(info)
    async with aclosing(info.context.services.room_lists.room_updated(str(viewer.id))) as rooms:
        async for room in rooms:
            yield Room.from_doc(room)
