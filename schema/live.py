"""What a subscription resolver may ask of the WebSocket operation it runs in.

Over a WebSocket each operation runs with a ``LiveOperation`` as its root value
(``transport.sharing.SocketOperation``); over HTTP the root value is None, and
subscriptions are refused there before any resolver runs.

A subscription that joins a shared feed is handed to its socket: once the resolver
has authorized it, ``follow_room`` (or ``follow_activity``) records the feed to
follow on the operation, and the resolver returns without yielding. Strawberry's
execution then ends as any stream does, releasing its extensions, execution
context and the resolver's generator; the socket's protocol handler, finding the
operation handed over, follows the feed itself instead of completing it. A
follower so holds only what delivery needs for as long as it is subscribed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from live.account_stream import AccountItem, AccountStream, Given
from schema.account_event_types import AccountEventPayload


@runtime_checkable
class LiveOperation(Protocol):
    """A subscription running over a WebSocket, which can deliver to its socket."""

    def follow_room(self, room_id: str, viewer_id: str, after_seq: int | None) -> None:
        """Hands the room's messages (authorized: the caller checked membership) to
        the socket, from after ``after_seq`` (None: from now)."""
        ...

    def follow_activity(self, room_id: str, viewer_id: str) -> None:
        """Hands the room's activity (authorized as above) to the socket."""
        ...

    def follow_account(
        self,
        stream: AccountStream,
        payload_of: Callable[[AccountItem], Awaitable[AccountEventPayload | None]],
        token_of: Callable[[Given], Awaitable[str]],
    ) -> None:
        """Hands the viewer's account stream (opened: its token checked) to the
        socket, each item shown as ``payload_of`` makes it (None: nothing to show)
        with the token ``token_of`` gives it."""
        ...
