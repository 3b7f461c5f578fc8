"""The log of stored room events other than new messages, by position."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class RoomEventDoc(Document):
    """One room event at its position (``services.event_positions``), as published.

    ``event`` is the event's wire form (``pubsub.encode_event``), so a replay gives
    exactly what the live stream gave. ``user_ids`` names the users the event is
    about personally (put in the room, taken out, invited): they get it even when
    they are no longer in the room. New messages are not logged here: a message
    carries its own ``pos``, stored with it in one insert. A change is logged before
    it is made and its position stays in flight until it is made
    (``services.room_event_log``). Kept ``PLOP_SYNC_RETENTION_SECONDS``.
    """

    pos: int
    room_id: PydanticObjectId
    user_ids: list[PydanticObjectId] = Field(default_factory=list)
    event: dict[str, Any]
    at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "room_events"
        indexes = [
            IndexModel([("room_id", ASCENDING), ("pos", ASCENDING)], name="room_pos"),
            # Every room's events in a span of positions (``services.recent_room_events``).
            IndexModel([("pos", ASCENDING)], name="pos"),
            IndexModel([("user_ids", ASCENDING), ("pos", ASCENDING)], name="user_pos"),
            IndexModel([("at", ASCENDING)], name="at"),
        ]
