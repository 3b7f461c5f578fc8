"""Uploads: files a user sent to object storage, and what became of each."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class UploadState(StrEnum):
    """PENDING: reserved by createUpload, not used yet (deleted once older than the
    orphan time). ATTACHING: taken by a send whose message (``message_id``) is being
    stored; ATTACHED once it is (the clean-up settles one a crash left, by whether
    the message exists). AVATAR: its owner's profile picture. DISCARDED: its message
    or account went, or another picture replaced it; the object is deleted, and the
    document with it once that worked."""

    PENDING = "PENDING"
    ATTACHING = "ATTACHING"
    ATTACHED = "ATTACHED"
    AVATAR = "AVATAR"
    DISCARDED = "DISCARDED"


class UploadDoc(Document):
    """One upload; its object is stored under ``key`` (``uploads/<id>``).

    ``filename``, ``content_type`` and ``size`` are what createUpload announced; a
    message may name the upload only once storage holds exactly that. ``width`` and
    ``height`` are read by the server from an image's first bytes when it is used.
    """

    owner_id: PydanticObjectId
    room_id: PydanticObjectId
    key: str
    filename: str
    content_type: str
    size: int
    state: UploadState = UploadState.PENDING
    message_id: PydanticObjectId | None = None
    # The idempotency key of the send that attached it: a retry of that send finds
    # its upload attached already, and takes it as its own.
    message_key: str | None = None
    width: int | None = None
    height: int | None = None
    created_at: datetime = Field(default_factory=utc_now)
    # When the state last changed: the clean-up's clock for PENDING and DISCARDED.
    changed_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "uploads"
        indexes = [
            # A page of messages' attachments.
            IndexModel([("message_id", ASCENDING)], name="message"),
            # The owner's stored bytes (the quota), and an account's deletion.
            IndexModel([("owner_id", ASCENDING), ("state", ASCENDING)], name="owner_state"),
            # The clean-up's question: pending or discarded uploads past their time.
            IndexModel([("state", ASCENDING), ("changed_at", ASCENDING)], name="state_changed"),
        ]
