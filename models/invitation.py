"""Group invitations: a user asked into a GROUP room by someone who is not their friend."""

from __future__ import annotations

from datetime import datetime

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class RoomInvitationDoc(Document):
    """A pending invitation of ``invitee_id`` into ``room_id``. Answering it removes it;
    one past ``expires_at`` is dead (never listed, never accepted) and the next
    invitation of the same user to the same room takes its place."""

    room_id: PydanticObjectId
    inviter_id: PydanticObjectId
    invitee_id: PydanticObjectId
    created_at: datetime = Field(default_factory=utc_now)
    expires_at: datetime

    class Settings:
        name = "room_invitations"
        indexes = [
            # At most one invitation per user and room, however many members invite them.
            IndexModel(
                [("room_id", ASCENDING), ("invitee_id", ASCENDING)],
                unique=True,
                name="room_invitee_unique",
            ),
            # The viewer's pending invitations.
            IndexModel([("invitee_id", ASCENDING), ("expires_at", ASCENDING)], name="invitee"),
        ]
