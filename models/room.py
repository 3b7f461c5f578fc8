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


class RoomRole(StrEnum):
    """A member's role in a GROUP room (every member of a DIRECT room is a MEMBER)."""

    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"


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
    # Time of the room's creation or newest membership change; with its messages'
    # activity (``RoomProgressDoc``) it orders the room list. Only ever moved forward.
    last_activity_at: datetime = Field(default_factory=utc_now)
    # Rooms stored before ``RoomProgressDoc`` kept their seq hint here. It is never
    # written now: it stays a lower bound of the newest seq, and reads take the
    # higher of it and the progress document's.
    seq_hint: int = 0
    # A new random value with every change of ``member_ids``. Events of messages
    # carry the tag their sender's authorization read, so a live stream can tell
    # that membership changed even when the change's own event was lost. Random,
    # not a counter: updates on FerretDB are not atomic, and two changes racing
    # must never leave the tag as it was.
    members_tag: str = Field(default_factory=lambda: new_members_tag())
    # The roles of a GROUP room, beside its members so that one read and one update
    # (under the room's members lock) see and change both. Rooms stored before roles
    # have neither: ``services.room_roles`` reads their oldest member as the owner.
    owner_id: PydanticObjectId | None = None
    admin_ids: list[PydanticObjectId] = Field(default_factory=list)

    class Settings:
        name = "rooms"
        indexes = [
            IndexModel([("pair_key", ASCENDING)], unique=True, name="pair_key_unique"),
            IndexModel(
                [("member_ids", ASCENDING), ("last_activity_at", DESCENDING), ("_id", DESCENDING)],
                name="member_activity",
            ),
        ]


class RoomProgressDoc(Document):
    """Where a room's messages stand; its id is the room's.

    Every stored message moves it, so it holds nothing of the room's membership: on
    FerretDB 1.x an update writes back the whole document it read, and a send's
    update of the room document could write back members a leave had just removed.
    Both fields only ever move forward; an update lost to a concurrent one only
    makes them lag.
    """

    id: PydanticObjectId  # the room's id, never generated
    # A lower bound of the room's newest seq: where its writer starts.
    seq_hint: int = 0
    # Time of the room's newest message.
    last_activity_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "room_progress"


class MembershipDoc(Document):
    """One member's own view of one room: read marker, hiding and muting."""

    room_id: PydanticObjectId
    user_id: PydanticObjectId
    last_read_seq: int = 0
    joined_at: datetime = Field(default_factory=utc_now)
    # A DIRECT room the member left: out of their room list until a message newer
    # than this arrives. The member stays in the room.
    hidden_at: datetime | None = None
    # No push of the room's messages to the member before this time.
    muted_until: datetime | None = None

    class Settings:
        name = "memberships"
        indexes = [
            IndexModel(
                [("room_id", ASCENDING), ("user_id", ASCENDING)],
                unique=True,
                name="room_user_unique",
            ),
        ]
