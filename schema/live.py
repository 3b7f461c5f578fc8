"""What a subscription resolver may ask of the WebSocket operation it runs in.

Over a WebSocket each operation runs with a ``LiveOperation`` as its root value
(``transport.sharing.SocketOperation``); over HTTP the root value is None.

A subscription that joins a shared feed is handed to its socket: ``follow_room``
raises ``FollowedBySocket`` instead of returning, which unwinds the execution
(strawberry's extensions and execution context, graphql-core's stream, the
resolver's generator) up to the socket's protocol handler. The handler keeps the
operation open and follows the feed itself, so a follower holds only what delivery
needs for as long as it is subscribed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from models import RoomDoc, UserDoc


class FollowedBySocket(BaseException):
    """The operation is authorized and handed to its socket, which runs ``follow``.

    A BaseException, so that no ``except Exception`` on the way up turns the hand-off
    into an error result: only the socket's protocol handler catches it.
    """

    def __init__(self, follow: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        # Streams to the socket until the subscription ends; raises a PlopError
        # (FORBIDDEN once the viewer leaves the room) for the client to see.
        self.follow = follow


@runtime_checkable
class LiveOperation(Protocol):
    """A subscription running over a WebSocket, which can deliver to its socket."""

    async def follow_room(self, room: RoomDoc, viewer: UserDoc, after_seq: int | None) -> bool:
        """Hands the room's messages (authorized: the caller checked membership) to
        the socket by raising ``FollowedBySocket``; False if it cannot."""
        ...

    async def follow_activity(self, room: RoomDoc, viewer: UserDoc) -> bool:
        """Hands the room's activity (authorized as above) to the socket by raising
        ``FollowedBySocket``; False if it cannot."""
        ...
