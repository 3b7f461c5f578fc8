"""The log of stored room events other than new messages, by position."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class RoomEventKind(StrEnum):
    """What a logged event was; a replay renders it from the store as it stands."""

    UPDATED = "updated"  # a message edited or deleted (message_id)
    REACTION = "reaction"  # a reaction added or removed (message_id, user_id: who)
    RECEIPT = "receipt"  # a read marker moved (user_id: whose)
    MEMBERS = "members"  # who is in the room changed, or its title or roles
    JOINED = "joined"  # user_id was put in the room
    LEFT = "left"  # user_id left or was removed
    INVITED = "invited"  # user_id was invited (invitation_id)


class RoomEventDoc(Document):
    """One room event at its position (``services.event_positions``).

    New messages are not logged here: a message carries its own ``pos``, stored with
    it in one insert. Each change is logged before it is made and its position stays
    in flight until it is made, so a replay up to the watermark never reads a change
    before it happened. Kept ``PLOP_SYNC_RETENTION_SECONDS``
    (``services.room_event_log``).
    """

    pos: int
    kind: RoomEventKind
    room_id: PydanticObjectId
    user_id: PydanticObjectId | None = None
    message_id: PydanticObjectId | None = None
    invitation_id: PydanticObjectId | None = None
    at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "room_events"
        indexes = [
            IndexModel([("room_id", ASCENDING), ("pos", ASCENDING)], name="room_pos"),
            IndexModel([("user_id", ASCENDING), ("pos", ASCENDING)], name="user_pos"),
            IndexModel([("at", ASCENDING)], name="at"),
        ]
