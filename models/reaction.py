"""Reactions: one emoji put on a message by one member."""

from __future__ import annotations

from datetime import datetime

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class ReactionDoc(Document):
    """One (message, user, emoji); the unique index makes adding it idempotent on every
    instance at once, with no read before the write."""

    message_id: PydanticObjectId
    room_id: PydanticObjectId
    user_id: PydanticObjectId
    emoji: str
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "reactions"
        indexes = [
            IndexModel(
                [("message_id", ASCENDING), ("user_id", ASCENDING), ("emoji", ASCENDING)],
                unique=True,
                name="message_user_emoji_unique",
            ),
            IndexModel(
                [("message_id", ASCENDING), ("created_at", ASCENDING)], name="message_reactions"
            ),
        ]
