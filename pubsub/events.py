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


@dataclass(frozen=True, slots=True)
class MessageAdded:
    """A message was stored in a room."""

    message: MessageData
    type = "message.added"

    @property
    def room_id(self) -> str:
        return self.message.room_id


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """Users joined or left a room."""

    room_id: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    type = "members.changed"


@dataclass(frozen=True, slots=True)
class RoomAdded:
    """A user was put in a room (created with them, or invited)."""

    user_id: str
    room_id: str
    type = "room.added"


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """Something in one user's view of a room changed (e.g. their read marker)."""

    user_id: str
    room_id: str
    type = "room.changed"


Event = MessageAdded | MembersChanged | RoomAdded | RoomChanged


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
        raise ValueError("unknown type")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("skipped an undecodable event", extra={"reason": str(exc)})
        return None
