"""Rooms and each member's place in them."""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from models.time import utc_now


class RoomKind(StrEnum):
    DIRECT = "DIRECT"
    GROUP = "GROUP"


def new_members_tag() -> str:
    return secrets.token_hex(8)


class RoomDoc(Document):
    """A room. ``pair_key`` makes a DIRECT room unique per pair of users.

    Every room has a ``pair_key`` (a GROUP room gets its own random one), because a
    unique index treats a missing field as null on MongoDB, and partial indexes are
    not available on every MongoDB-protocol server Plop runs on.
    """

    kind: RoomKind
    title: str | None = None
    member_ids: list[PydanticObjectId]
    pair_key: str
    created_at: datetime = Field(default_factory=utc_now)
    # Time of the newest activity (creation, message, membership change): orders
    # the room list. Only ever moved forward.
    last_activity_at: datetime = Field(default_factory=utc_now)
    # A lower bound of the room's newest seq: where a sender starts looking for the
    # next free seq. Moved forward after each stored message; an update lost to a
    # concurrent writer only makes it lag, never run ahead of the messages.
    seq_hint: int = 0
    # A new random value with every change of ``member_ids``. Events of messages
    # carry the tag their sender's authorization read, so a live stream can tell
    # that membership changed even when the change's own event was lost. Random,
    # not a counter: updates on FerretDB are not atomic, and two changes racing
    # must never leave the tag as it was.
    members_tag: str = Field(default_factory=lambda: new_members_tag())

    class Settings:
        name = "rooms"
        indexes = [
            IndexModel([("pair_key", ASCENDING)], unique=True, name="pair_key_unique"),
            IndexModel(
                [("member_ids", ASCENDING), ("last_activity_at", DESCENDING), ("_id", DESCENDING)],
                name="member_activity",
            ),
        ]


class MembershipDoc(Document):
    """One member's read marker in one room."""

    room_id: PydanticObjectId
    user_id: PydanticObjectId
    last_read_seq: int = 0
    joined_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "memberships"
        indexes = [
            IndexModel(
                [("room_id", ASCENDING), ("user_id", ASCENDING)],
                unique=True,
                name="room_user_unique",
            ),
        ]
