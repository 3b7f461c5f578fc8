"""Accounts."""

from __future__ import annotations

from datetime import datetime

from beanie import Document
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class UserDoc(Document):
    """One account. ``username`` is stored lowercased and is unique by index."""

    username: str
    display_name: str
    # Lowercased display name, for case-insensitive prefix search.
    display_name_key: str
    password_hash: str
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "users"
        indexes = [
            IndexModel([("username", ASCENDING)], unique=True, name="username_unique"),
            IndexModel([("display_name_key", ASCENDING)], name="display_name_key"),
        ]
