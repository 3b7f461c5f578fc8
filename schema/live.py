"""What a subscription resolver may ask of the WebSocket operation it runs in.

Over a WebSocket each operation runs with a ``LiveOperation`` as its root value
(``transport.sharing.SocketOperation``); over HTTP the root value is None.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from models import RoomDoc, UserDoc


@runtime_checkable
class LiveOperation(Protocol):
    """A subscription running over a WebSocket, which can deliver to its socket."""

    async def follow_room(self, room: RoomDoc, viewer: UserDoc, after_seq: int | None) -> bool:
        """Delivers the room's messages (authorized: the caller checked membership)
        straight to the socket until the subscription ends; False if it cannot."""
        ...

    async def follow_activity(self, room: RoomDoc, viewer: UserDoc) -> bool:
        """Delivers the room's activity (authorized as above) straight to the socket
        until the subscription ends; False if it cannot."""
        ...
