"""Blocks: one user refusing contact from another."""

from __future__ import annotations

from datetime import datetime

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class BlockDoc(Document):
    """``blocker_id`` blocks ``blocked_id``; the pair is unique by index, so blocking
    twice stores one document. A block goes one way: each side blocks on its own."""

    blocker_id: PydanticObjectId
    blocked_id: PydanticObjectId
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "blocks"
        indexes = [
            IndexModel(
                [("blocker_id", ASCENDING), ("blocked_id", ASCENDING)],
                unique=True,
                name="blocker_blocked_unique",
            ),
            # Who blocks a sender: the push worker's question for every message.
            IndexModel([("blocked_id", ASCENDING)], name="blocked"),
        ]
