"""Accounts."""

from __future__ import annotations

from datetime import datetime

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class UserDoc(Document):
    """One account. ``username`` is stored lowercased and is unique by index.

    A deleted account keeps its document, so that its username stays taken and its
    messages keep a sender: ``deletion_started_at`` is set when its deletion begins
    (``services.account_deletion`` finishes what a crash left), ``deleted`` when it
    is done, its profile erased then.
    """

    username: str
    display_name: str
    # Lowercased display name, for case-insensitive prefix search.
    display_name_key: str
    password_hash: str
    created_at: datetime = Field(default_factory=utc_now)
    deletion_started_at: datetime | None = None
    deleted: bool = False
    # The upload shown as the profile picture (services.uploads), if any.
    avatar_upload_id: PydanticObjectId | None = None

    class Settings:
        name = "users"
        indexes = [
            IndexModel([("username", ASCENDING)], unique=True, name="username_unique"),
            IndexModel([("display_name_key", ASCENDING)], name="display_name_key"),
            # The background pass's question: deletions begun and not finished.
            IndexModel([("deletion_started_at", ASCENDING)], name="deletion_started"),
        ]
