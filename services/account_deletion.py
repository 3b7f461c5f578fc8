"""Deleting an account: in steps that each may run again, finished even after a crash.

``delete`` checks the password, then marks the account as being deleted (its
``deletion_started_at``, with the profile shown as "Deleted user") before anything
else: from then on it can never log in, and if the instance dies half-way, a retry
of deleteAccount (while a session is left) or the background pass of any instance
(``finish_pending``, once the deletion is older than a grace period) runs the steps
again. Every step is idempotent, so running them twice, or a step twice, is harmless:

1. every session ends: sockets close on every instance; every push device goes;
2. friendships end (both ways, with their events), friend requests and blocks (both
   directions) go, and so do the group invitations the user sent or got;
3. every message the user sent is erased as a delete erases it (its seq stays, so
   history has no gap) and published as a ``MessageUpdated``; every file the user
   uploaded (attachments, profile pictures, unused uploads) is deleted from storage;
4. the user leaves every GROUP room through the rooms' own leave, so that a group's
   rules on a leave hold here too (ownership passes on); in a DIRECT room they stay
   a member, so that the other member keeps the room and its history;
5. the password hash goes and the account is marked ``deleted``.

The document itself stays: its username stays taken (the unique index), so that
nobody signs up as the user and inherits their rooms, and their messages keep a
sender that reads "Deleted user".
"""

from __future__ import annotations

import logging
from datetime import timedelta

from beanie import PydanticObjectId

from models import RoomDoc, UserDoc
from models.room import RoomKind
from models.time import utc_now
from services.accounts import AccountService
from services.blocks import BlockService
from services.devices import DeviceService
from services.friends import FriendService
from services.invitations import InvitationService
from services.messages import MessageService
from services.rate_limits import LimitName, RateLimiter
from services.rooms import RoomService
from services.uploads import UploadService

logger = logging.getLogger(__name__)

DELETED_DISPLAY_NAME = "Deleted user"
# Unfinished deletions one background pass takes on.
PENDING_BATCH = 20


class AccountDeletion:
    """Deletes accounts, and finishes deletions a crashed instance left."""

    def __init__(
        self,
        accounts: AccountService,
        devices: DeviceService,
        friends: FriendService,
        blocks: BlockService,
        invitations: InvitationService,
        rooms: RoomService,
        messages: MessageService,
        limits: RateLimiter,
        uploads: UploadService,
        *,
        grace_seconds: float,
        interval_seconds: float,
    ) -> None:
        self._accounts = accounts
        self._devices = devices
        self._friends = friends
        self._blocks = blocks
        self._invitations = invitations
        self._rooms = rooms
        self._messages = messages
        self._uploads = uploads
        self._limits = limits
        self._grace = timedelta(seconds=grace_seconds)
        self.interval_seconds = interval_seconds

    async def delete(self, viewer: UserDoc, password: str, client_address: str) -> None:
        """Deletes the viewer's account; FORBIDDEN for a wrong password (which spends
        the failed-logIn budgets). Again on an account being deleted, it finishes."""
        await self._limits.hit(LimitName.DELETE_ACCOUNT, str(viewer.id))
        stored = await self._accounts.check_password(viewer, password, client_address)
        assert stored.id is not None
        await self.begin(stored.id)
        await self.finish(stored.id)

    @staticmethod
    async def begin(user_id: PydanticObjectId) -> None:
        """Marks the account as being deleted (the first step: nothing undoes it)."""
        await UserDoc.find_one({"_id": user_id, "deletion_started_at": None}).update(
            {
                "$set": {
                    "deletion_started_at": utc_now(),
                    "display_name": DELETED_DISPLAY_NAME,
                    "display_name_key": "",
                }
            }
        )

    async def finish(self, user_id: PydanticObjectId) -> None:
        """Runs every step of a begun deletion (see the module); idempotent."""
        user = await UserDoc.get(user_id)
        if user is None or user.deleted or user.deletion_started_at is None:
            return
        await self._accounts.end_all_sessions(str(user_id))
        await self._devices.forget_user(user_id)  # those of no session too
        await self._friends.forget(user_id)
        await self._blocks.forget(user_id)
        await self._invitations.forget(user_id)
        await self._messages.erase_sent_by(user)
        await self._uploads.discard_of_owner(user_id)
        await UserDoc.find_one({"_id": user_id}).update({"$set": {"avatar_upload_id": None}})
        for room in await RoomDoc.find({"member_ids": user_id, "kind": RoomKind.GROUP}).to_list():
            await self._rooms.leave(room, user, spend_budget=False)
        await UserDoc.find_one({"_id": user_id}).update(
            {"$set": {"deleted": True, "password_hash": ""}}
        )
        logger.info("account deleted", extra={"user": str(user_id)})

    async def finish_pending(self) -> int:
        """Finishes deletions begun more than the grace period ago (what crashed
        instances left; due once per ``interval_seconds``); returns how many."""
        cutoff = utc_now() - self._grace
        pending = (
            await UserDoc.find({"deletion_started_at": {"$lt": cutoff}, "deleted": {"$ne": True}})
            .limit(PENDING_BATCH)
            .to_list()
        )
        for user in pending:
            assert user.id is not None
            await self.finish(user.id)
        return len(pending)
