"""A viewer's room list as it changes: roomAdded and roomUpdated.

Both follow the viewer's own route on the hub; ``room_updated`` also follows every
room the viewer is in, and keeps that set exact: a room the viewer is put in is
watched at once, one they are taken out of is dropped, and after a lag (a join or a
leave may have been dropped) the rooms are read again. Each change is given as the
room read from the store after the event, and only while the viewer is in it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Generic, Protocol, TypeVar

from live.hub import LAGGED, FanoutHub, Inbox
from pubsub import (
    MembersChanged,
    MessageAdded,
    MessageUpdated,
    RoomAdded,
    RoomChanged,
    room_route,
    user_route,
)

RoomT = TypeVar("RoomT")
RoomT_co = TypeVar("RoomT_co", covariant=True)


class RoomListReads(Protocol[RoomT_co]):
    """What a room list reads from the store."""

    async def rooms_of(self, viewer_id: str) -> set[str]:
        """The ids of the rooms the viewer is in now."""
        ...

    async def room_of_member(self, room_id: str, viewer_id: str) -> RoomT_co | None:
        """The room as it is now, if the viewer is in it."""
        ...

    async def is_last(self, event: MessageUpdated) -> bool:
        """Whether an edited or deleted message is its room's newest."""
        ...


class RoomLists(Generic[RoomT]):
    """Opens the room-list streams of this instance."""

    def __init__(self, hub: FanoutHub, reads: RoomListReads[RoomT]) -> None:
        self._hub = hub
        self._reads = reads

    async def room_added(self, viewer_id: str) -> AsyncGenerator[RoomT, None]:
        """Rooms the viewer is put in from now on."""
        with self._hub.watching(user_route(viewer_id)) as inbox:
            while True:
                event = await inbox.get()
                if isinstance(event, RoomAdded) and (
                    room := await self._reads.room_of_member(event.room_id, viewer_id)
                ):
                    yield room

    async def room_updated(self, viewer_id: str) -> AsyncGenerator[RoomT, None]:
        """The viewer's rooms as they change: messages, members, read marker."""
        # Active (counted) once it watches the viewer's rooms: a change made after the
        # count rose must reach it.
        with self._hub.watching(user_route(viewer_id), subscription=False) as inbox:
            await self._watch_joined_rooms(inbox, viewer_id)
            with self._hub.counted():
                while True:
                    event = await inbox.get()
                    if event is LAGGED:
                        # What was dropped may have been a join or a leave: watch again
                        # exactly the rooms the viewer is in now. Clients refetch the list.
                        await self._watch_joined_rooms(inbox, viewer_id)
                        continue
                    if isinstance(event, RoomAdded):
                        self._hub.watch(inbox, room_route(event.room_id))
                    if isinstance(event, MembersChanged) and viewer_id in event.removed:
                        self._hub.unwatch(inbox, room_route(event.room_id))
                        continue
                    if isinstance(event, MessageUpdated) and not await self._reads.is_last(event):
                        continue
                    if isinstance(
                        event,
                        MessageAdded | MessageUpdated | MembersChanged | RoomAdded | RoomChanged,
                    ) and (room := await self._reads.room_of_member(event.room_id, viewer_id)):
                        yield room

    async def _watch_joined_rooms(self, inbox: Inbox, viewer_id: str) -> None:
        """Makes the inbox watch the viewer's own route and exactly the rooms they are in."""
        joined = await self._reads.rooms_of(viewer_id)
        wanted = {user_route(viewer_id)} | {room_route(each) for each in joined}
        for route in inbox.routes - wanted:
            self._hub.unwatch(inbox, route)
        for route in wanted - inbox.routes:
            self._hub.watch(inbox, route)
