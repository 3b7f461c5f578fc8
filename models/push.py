"""Devices that receive push notifications."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, IndexModel

from models.time import utc_now


class PushPlatform(StrEnum):
    FCM = "FCM"
    WEBHOOK = "WEBHOOK"


class PushDeviceDoc(Document):
    """A device token of one user. ``token_hash`` (SHA-256 of the token) is unique:
    a token belongs to one user at a time, and hashing keeps the index key small
    however long the token is."""

    user_id: PydanticObjectId
    platform: PushPlatform
    token: str
    token_hash: str
    # The session that registered it (``auth.sessions.session_id``): its logOut
    # removes the device, so a shared phone stops getting the previous user's pushes.
    session_id: str | None = None
    created_at: datetime = Field(default_factory=utc_now)

    class Settings:
        name = "push_devices"
        indexes = [
            IndexModel([("token_hash", ASCENDING)], unique=True, name="token_hash_unique"),
            IndexModel([("user_id", ASCENDING)], name="user"),
            IndexModel([("session_id", ASCENDING)], name="session"),
        ]
