"""Beanie documents and their indexes. No logic lives here: services own the rules."""

from __future__ import annotations

from beanie import Document

from models.block import BlockDoc
from models.friend import FriendRequestDoc, FriendshipDoc
from models.invitation import RoomInvitationDoc
from models.message import MessageDoc
from models.push import PushDeviceDoc
from models.reaction import ReactionDoc
from models.room import MembershipDoc, RoomDoc, RoomProgressDoc
from models.room_event import RoomEventDoc
from models.upload import UploadDoc
from models.user import UserDoc

DOCUMENT_MODELS: list[type[Document]] = [
    UserDoc,
    RoomDoc,
    RoomProgressDoc,
    MembershipDoc,
    MessageDoc,
    FriendRequestDoc,
    FriendshipDoc,
    PushDeviceDoc,
    BlockDoc,
    RoomInvitationDoc,
    ReactionDoc,
    UploadDoc,
    RoomEventDoc,
]

__all__ = [
    "DOCUMENT_MODELS",
    "BlockDoc",
    "FriendRequestDoc",
    "FriendshipDoc",
    "MembershipDoc",
    "MessageDoc",
    "PushDeviceDoc",
    "ReactionDoc",
    "RoomDoc",
    "RoomEventDoc",
    "RoomInvitationDoc",
    "RoomProgressDoc",
    "UploadDoc",
    "UserDoc",
]
