"""What Plop's API returns, as typed, immutable values (field names in Python style)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class RoomKind(Enum):
    DIRECT = "DIRECT"
    GROUP = "GROUP"


class RoomRole(Enum):
    """OWNER (one per group), ADMIN (renames, removes members) or MEMBER."""

    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    display_name: str


@dataclass(frozen=True, slots=True)
class AuthPayload:
    """A session: the token to send with every call, and whose it is."""

    token: str
    user: User


@dataclass(frozen=True, slots=True)
class Session:
    """One of the viewer's sessions (one per logIn or signUp)."""

    id: str
    created_at: datetime
    last_seen_at: datetime
    # The session making the request.
    current: bool
    # As the client sent it, at most 200 characters.
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class ReactionGroup:
    """The reactions with one emoji on a message."""

    emoji: str
    count: int
    reacted_by_viewer: bool


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message; ``url`` is a short-lived download link."""

    id: str
    filename: str
    content_type: str
    size: int
    url: str
    # Pixels, for images whose size the server read.
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    room_id: str
    # Per room: 1, 2, 3, ... with no gaps.
    seq: int
    sender: User
    # Empty once deleted.
    text: str
    client_id: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted: bool
    # The message this one answers, if any.
    reply_to_id: str | None = None
    # One group per emoji, most used first; empty once deleted.
    reactions: tuple[ReactionGroup, ...] = ()
    # Only documents that ask for them fill these in (sending a file does).
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    kind: RoomKind
    # None for DIRECT rooms.
    title: str | None
    members: tuple[User, ...]
    created_at: datetime
    # 0 for an empty room.
    last_seq: int
    last_message: Message | None
    last_read_seq: int
    unread_count: int
    # No push of the room before then; None when not muted.
    muted_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RoomInvitation:
    """An invitation into a group room; ``room`` shows its title and members only."""

    id: str
    room: Room
    inviter: User
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RoomMembership:
    """One member of a room, with their role and when they joined."""

    user: User
    role: RoomRole
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class TypingEvent:
    """A member started (``typing``) or stopped typing; a start expires on its own."""

    room_id: str
    user: User
    typing: bool


@dataclass(frozen=True, slots=True)
class ReadReceipt:
    """A member's read marker moved forward."""

    room_id: str
    user: User
    last_read_seq: int


@dataclass(frozen=True, slots=True)
class MessageUpdated:
    """A message was edited or deleted; ``message`` is how it stands now."""

    message: Message


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """Members joined or left; ``room`` is the room after the change."""

    room: Room


@dataclass(frozen=True, slots=True)
class ReactionChanged:
    """A member added (``added``) or removed an emoji; ``message`` shows the reactions
    as they now stand."""

    message: Message
    user: User
    emoji: str
    added: bool


RoomActivity = TypingEvent | ReadReceipt | MessageUpdated | MembersChanged | ReactionChanged


# --- the account stream (``PlopClient.events``) ----------------------------------------


@dataclass(frozen=True, slots=True)
class MessageAdded:
    """A new message in one of the viewer's rooms."""

    message: Message


@dataclass(frozen=True, slots=True)
class RoomJoined:
    """The viewer is in a room now (created with them, or an invitation accepted)."""

    room: Room


@dataclass(frozen=True, slots=True)
class RoomLeft:
    """The viewer left the room or was removed: nothing of it follows."""

    room_id: str


@dataclass(frozen=True, slots=True)
class RoomInvited:
    """Someone invited the viewer into a group room."""

    invitation: RoomInvitation


AccountEventPayload = (
    MessageAdded
    | MessageUpdated
    | ReactionChanged
    | TypingEvent
    | ReadReceipt
    | MembersChanged
    | RoomJoined
    | RoomLeft
    | RoomInvited
)


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """One event of the viewer's account; ``token``, passed back as ``since``, resumes
    right after it (keep the last one to carry on where an app stopped)."""

    token: str
    payload: AccountEventPayload
