"""Typed events and their versioned JSON encoding.

Every event on the wire is one JSON object ``{"v": 1, "type": ..., ...}``. A reader
skips (and logs) an event whose version or type it does not know, so that instances
of different versions can share a broker during a rolling upgrade.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

EVENT_VERSION = 1


@dataclass(frozen=True, slots=True)
class MessageData:
    """A message as subscribers need it, with its sender, so fan-out reads no database."""

    id: str
    room_id: str
    seq: int
    sender_id: str
    sender_username: str
    sender_display_name: str
    text: str
    client_id: str | None
    created_at: str  # ISO-8601, UTC
    edited_at: str | None
    deleted: bool


def room_route(room_id: str) -> str:
    """Where a room's events go in an instance (see services.fanout)."""
    return f"room:{room_id}"


def user_route(user_id: str) -> str:
    """Where the events for one user's own view (room list, friends) go."""
    return f"user:{user_id}"


def presence_route(user_id: str) -> str:
    """Where one user's presence changes go (watched by their friends)."""
    return f"presence:{user_id}"


@dataclass(frozen=True, slots=True)
class MessageAdded:
    """A message was stored in a room."""

    message: MessageData
    type = "message.added"

    @property
    def room_id(self) -> str:
        return self.message.room_id

    @property
    def route(self) -> str:
        return room_route(self.message.room_id)


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """Users joined or left a room."""

    room_id: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    type = "members.changed"

    @property
    def route(self) -> str:
        return room_route(self.room_id)


@dataclass(frozen=True, slots=True)
class RoomAdded:
    """A user was put in a room (created with them, or invited)."""

    user_id: str
    room_id: str
    type = "room.added"

    @property
    def route(self) -> str:
        return user_route(self.user_id)


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """Something in one user's view of a room changed (e.g. their read marker)."""

    user_id: str
    room_id: str
    type = "room.changed"

    @property
    def route(self) -> str:
        return user_route(self.user_id)


@dataclass(frozen=True, slots=True)
class FriendshipChanged:
    """``user_id`` and ``friend_id`` became friends (added) or stopped being friends."""

    user_id: str
    friend_id: str
    added: bool
    type = "friendship.changed"

    @property
    def route(self) -> str:
        return user_route(self.user_id)


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A user went ONLINE or OFFLINE; ``last_seen_at`` is ISO-8601 UTC, set when OFFLINE."""

    user_id: str
    status: str
    last_seen_at: str | None
    type = "presence.changed"

    @property
    def route(self) -> str:
        return presence_route(self.user_id)


Event = (
    MessageAdded | MembersChanged | RoomAdded | RoomChanged | FriendshipChanged | PresenceChanged
)


def encode_event(event: Event) -> bytes:
    """The event's wire form."""
    body: dict[str, Any] = {"v": EVENT_VERSION, "type": event.type, **asdict(event)}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_event(raw: bytes) -> Event | None:
    """The event, or None (logged) if it is malformed or of an unknown version or type."""
    try:
        body = json.loads(raw)
        if body.pop("v") != EVENT_VERSION:
            raise ValueError("unknown version")
        kind = body.pop("type")
        if kind == MessageAdded.type:
            return MessageAdded(message=MessageData(**body["message"]))
        if kind == MembersChanged.type:
            return MembersChanged(
                room_id=body["room_id"],
                added=tuple(body["added"]),
                removed=tuple(body["removed"]),
            )
        if kind == RoomAdded.type:
            return RoomAdded(**body)
        if kind == RoomChanged.type:
            return RoomChanged(**body)
        if kind == FriendshipChanged.type:
            return FriendshipChanged(**body)
        if kind == PresenceChanged.type:
            return PresenceChanged(**body)
        raise ValueError("unknown type")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("skipped an undecodable event", extra={"reason": str(exc)})
        return None
