"""Typed events and their versioned JSON encoding.

Every event on the wire is one JSON object ``{"v": 1, "type": ..., ...}``. A reader
skips (and logs) an event whose version or type it does not know, so that instances
of different versions can share a broker during a rolling upgrade.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
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
    created_at: datetime  # UTC; ISO-8601 on the wire
    edited_at: datetime | None
    deleted: bool
    # The message this one answers, and the members its text names (@username).
    reply_to_id: str | None = None
    mention_ids: tuple[str, ...] = ()
    # Where the message stands among all room events (``services.event_positions``);
    # None for messages stored before positions.
    pos: int | None = None


# Which keys a subscriber wants (see ``Broker.subscribe``): an instance drops the
# events of rooms and users nobody follows on it before decoding them.
KeyFilter = Callable[[str], bool]


def room_route(room_id: str) -> str:
    """Where a room's events go in an instance (see live.hub)."""
    return f"room:{room_id}"


def user_route(user_id: str) -> str:
    """Where the events for one user's own view (room list, friends) go."""
    return f"user:{user_id}"


def presence_route(user_id: str) -> str:
    """Where one user's presence changes go (watched by their friends)."""
    return f"presence:{user_id}"


@dataclass(frozen=True, slots=True)
class MessageAdded:
    """A message was stored in a room.

    ``members_tag`` is the room's membership tag as the sender's authorization read
    it: a stream that knows another tag re-reads who is in the room before it
    delivers (see ``live.room_stream``). None when unknown (the relay).
    """

    message: MessageData
    members_tag: str | None = None
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
    pos: int | None = None
    type = "members.changed"

    @property
    def route(self) -> str:
        return room_route(self.room_id)


@dataclass(frozen=True, slots=True)
class MessageUpdated:
    """A stored message was edited or deleted; ``message`` is how it stands now.

    ``members_tag`` as in ``MessageAdded``: the membership the editor's authorization read.
    """

    message: MessageData
    members_tag: str | None = None
    pos: int | None = None  # of this edit or delete among room events
    type = "message.updated"

    @property
    def room_id(self) -> str:
        return self.message.room_id

    @property
    def route(self) -> str:
        return room_route(self.message.room_id)


@dataclass(frozen=True, slots=True)
class ReactionChanged:
    """A member added or removed one emoji on a message (stored first; the event
    carries who and what, and readers show the message's reactions as they stand)."""

    room_id: str
    message_id: str
    seq: int  # the message's
    user_id: str
    username: str
    display_name: str
    emoji: str
    added: bool
    members_tag: str | None = None
    pos: int | None = None
    type = "reaction.changed"

    @property
    def route(self) -> str:
        return room_route(self.room_id)


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """A member started or stopped typing in a room (ephemeral: never stored)."""

    room_id: str
    user_id: str
    username: str
    display_name: str
    typing: bool
    members_tag: str | None = None
    type = "typing.changed"

    @property
    def route(self) -> str:
        return room_route(self.room_id)


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """A member's read marker in a room moved forward to ``last_read_seq``; the reader's
    names travel with it, so fan-out reads no database (as with ``MessageData``)."""

    room_id: str
    user_id: str
    username: str
    display_name: str
    last_read_seq: int
    members_tag: str | None = None
    pos: int | None = None
    type = "read.receipt"

    @property
    def route(self) -> str:
        return room_route(self.room_id)


@dataclass(frozen=True, slots=True)
class RoomAdded:
    """A user was put in a room (created with them, or invited)."""

    user_id: str
    room_id: str
    pos: int | None = None
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
class InvitationReceived:
    """A user was invited to a group and joins only by accepting (``RoomInvitation``)."""

    user_id: str
    room_id: str
    invitation_id: str
    pos: int | None = None
    type = "invitation.received"

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


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """A session of the user ended (logOut): its sockets close on every instance.

    ``session_id`` is the SHA-256 of the token (``auth.sessions.session_id``), never
    the token itself.
    """

    user_id: str
    session_id: str
    type = "session.ended"

    @property
    def route(self) -> str:
        return user_route(self.user_id)


Event = (
    MessageAdded
    | MessageUpdated
    | ReactionChanged
    | TypingChanged
    | ReadReceipt
    | MembersChanged
    | RoomAdded
    | RoomChanged
    | InvitationReceived
    | FriendshipChanged
    | PresenceChanged
    | SessionEnded
)

# Events that change who may see what: a stream never drops them (live.hub).
CONTROL_EVENTS = (MembersChanged, RoomAdded, InvitationReceived, FriendshipChanged, SessionEnded)
# What happens in a room besides new messages (roomActivity), MembersChanged aside.
ACTIVITY_EVENTS = (MessageUpdated, ReactionChanged, TypingChanged, ReadReceipt)


def _message_to_wire(message: MessageData) -> dict[str, Any]:
    body = asdict(message)
    body["created_at"] = message.created_at.isoformat()
    body["edited_at"] = message.edited_at.isoformat() if message.edited_at else None
    # Left out when empty, so that a plain message reads the same to an instance that
    # predates replies and mentions (a rolling upgrade).
    for field in ("reply_to_id", "mention_ids", "pos"):
        if not body[field]:
            del body[field]
    return body


def _message_from_wire(body: dict[str, Any]) -> MessageData:
    edited = body["edited_at"]
    return MessageData(
        **{
            **body,
            "created_at": datetime.fromisoformat(body["created_at"]),
            "edited_at": datetime.fromisoformat(edited) if edited else None,
            "mention_ids": tuple(body.get("mention_ids") or ()),
        }
    )


@dataclass(frozen=True, slots=True)
class Delivery:
    """An event consumed in a group; ``commit`` marks it (and all before it) as done."""

    event: Event
    commit: Callable[[], Awaitable[None]]


def encode_event(event: Event) -> bytes:
    """The event's wire form."""
    body: dict[str, Any] = {"v": EVENT_VERSION, "type": event.type, **asdict(event)}
    if isinstance(event, MessageAdded | MessageUpdated):
        body["message"] = _message_to_wire(event.message)
    return json.dumps(body, separators=(",", ":")).encode()


def decode_event(raw: bytes) -> Event | None:
    """The event, or None (logged) if it is malformed or of an unknown version or type."""
    try:
        body = json.loads(raw)
        if body.pop("v") != EVENT_VERSION:
            raise ValueError("unknown version")
        kind = body.pop("type")
        if kind == MessageAdded.type:
            return MessageAdded(
                message=_message_from_wire(body["message"]), members_tag=body.get("members_tag")
            )
        if kind == MessageUpdated.type:
            return MessageUpdated(
                message=_message_from_wire(body["message"]),
                members_tag=body.get("members_tag"),
                pos=body.get("pos"),
            )
        if kind == ReactionChanged.type:
            return ReactionChanged(**body)
        if kind == TypingChanged.type:
            return TypingChanged(**body)
        if kind == ReadReceipt.type:
            return ReadReceipt(**body)
        if kind == MembersChanged.type:
            return MembersChanged(
                room_id=body["room_id"],
                added=tuple(body["added"]),
                removed=tuple(body["removed"]),
                pos=body.get("pos"),
            )
        if kind == RoomAdded.type:
            return RoomAdded(**body)
        if kind == RoomChanged.type:
            return RoomChanged(**body)
        if kind == InvitationReceived.type:
            return InvitationReceived(**body)
        if kind == FriendshipChanged.type:
            return FriendshipChanged(**body)
        if kind == PresenceChanged.type:
            return PresenceChanged(**body)
        if kind == SessionEnded.type:
            return SessionEnded(**body)
        raise ValueError("unknown type")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("skipped an undecodable event", extra={"reason": str(exc)})
        return None
