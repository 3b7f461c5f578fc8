"""Friend requests and friendships."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class FriendRequestStatus(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"


class FriendRequestDoc(Document):
    """A request from one user to another.

    ``open_key`` is ``<from>:<to>`` while the request is pending, which the unique
    index turns into "one pending request per direction"; answering the request
    moves it to ``<from>:<to>:<id>`` so that a later request may be sent again.
    """

    from_id: PydanticObjectId
    to_id: PydanticObjectId
    status: FriendRequestStatus = FriendRequestStatus.PENDING
    open_key: str
    created_at: datetime = Field(default_factory=utc_now)
    responded_at: datetime | None = None

    class Settings:
        name = "friend_requests"
        indexes = [
            IndexModel([("open_key", ASCENDING)], unique=True, name="open_key_unique"),
            IndexModel([("to_id", ASCENDING)], name="to"),
            IndexModel([("from_id", ASCENDING)], name="from"),
        ]


class FriendshipDoc(Document):
    """One direction of a friendship: ``owner_id`` has ``friend_id`` as a friend.

    A friendship is two documents, one per side, so that "my friends" is one
    equality lookup on ``owner_id``.
    """

    owner_id: PydanticObjectId
    friend_id: PydanticObjectId
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "friendships"
        indexes = [
            IndexModel(
                [("owner_id", ASCENDING), ("friend_id", ASCENDING)],
                unique=True,
                name="owner_friend_unique",
            ),
        ]
