"""What Plop's API returns, as typed, immutable values (field names in Python style)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any


class RoomKind(Enum):
    DIRECT = "DIRECT"
    GROUP = "GROUP"


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


# Parsers of the JSON the documents in client/documents.py ask for. The server is
# trusted to answer with the contract's types; a missing field is a KeyError.


def parse_user(data: Mapping[str, Any]) -> User:
    return User(id=data["id"], username=data["username"], display_name=data["displayName"])


def parse_auth(data: Mapping[str, Any]) -> AuthPayload:
    return AuthPayload(token=data["token"], user=parse_user(data["user"]))


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def parse_message(data: Mapping[str, Any]) -> Message:
    return Message(
        id=data["id"],
        room_id=data["roomId"],
        seq=data["seq"],
        sender=parse_user(data["sender"]),
        text=data["text"],
        client_id=data["clientId"],
        created_at=datetime.fromisoformat(data["createdAt"]),
        edited_at=_timestamp(data["editedAt"]),
        deleted=data["deleted"],
    )


def parse_room(data: Mapping[str, Any]) -> Room:
    last_message = data["lastMessage"]
    return Room(
        id=data["id"],
        kind=RoomKind(data["kind"]),
        title=data["title"],
        members=tuple(parse_user(member) for member in data["members"]),
        created_at=datetime.fromisoformat(data["createdAt"]),
        last_seq=data["lastSeq"],
        last_message=parse_message(last_message) if last_message else None,
        last_read_seq=data["lastReadSeq"],
        unread_count=data["unreadCount"],
    )
