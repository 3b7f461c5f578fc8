"""Group invitations: consent before a stranger is put in a group.

A member who adds a user who is not their friend (``createGroupRoom``'s memberIds,
``inviteMembers``) does not make them a member: the user gets an invitation, and
joins only by accepting it (``RoomService.respond_to_invitation``). Until then they
are no member, so they read and receive nothing of the room: every read, stream and
push asks the room's members.

Invitations are created in one place, ``InvitationService.invite``, which logs each
(``services.room_event_log``) and publishes it as an ``InvitationReceived``.

An invitation dies after its time to live; a declined inviter, and one the invitee
blocked, may not invite that user again (to any room) before a cooldown ends; each
invitation spends one of the inviter's budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, suppress
from datetime import datetime, timedelta

from beanie import PydanticObjectId, SortDirection
from pymongo.errors import DuplicateKeyError
from pymongo.results import UpdateResult

from errors import NotFound
from models import RoomInvitationDoc
from models.time import as_utc, utc_now
from pubsub import InvitationReceived
from services.publisher import EventPublisher
from services.rate_limits import Budget, LimitName, RateLimiter
from services.room_event_log import NothingChanged, RoomEventLog

NO_SUCH_INVITATION = "no such invitation"
# The most pending invitations one list shows: far more than a person answers, and a
# full page, as the query cost weighs a list without a page size (schema/cost.py).
MAX_LISTED_INVITATIONS = 100


def _cooldown(inviter_id: PydanticObjectId, invitee_id: PydanticObjectId) -> Budget:
    return (LimitName.ROOM_INVITATION_COOLDOWN, f"{inviter_id}:{invitee_id}")


class InvitationService:
    """Creates, lists and ends invitations; joining is the room service's."""

    def __init__(
        self,
        limits: RateLimiter,
        ttl_seconds: float,
        publisher: EventPublisher,
        event_log: RoomEventLog,
    ) -> None:
        self._limits = limits
        self._publisher = publisher
        self._event_log = event_log
        self._ttl = timedelta(seconds=ttl_seconds)

    async def may_invite(
        self, inviter_id: PydanticObjectId, invitee_ids: Sequence[PydanticObjectId]
    ) -> None:
        """RATE_LIMITED if any invitee is in a cooldown of the inviter's, or if the
        inviter's budget has not one call per invitee left. Called before anything is
        written, so that a refusal leaves nothing half done."""
        if not invitee_ids:
            return
        await self._limits.check(*(_cooldown(inviter_id, invitee) for invitee in invitee_ids))
        # One call of the budget per invitee; a refusal part-way spends what it spent.
        for _ in invitee_ids:
            await self._limits.hit(LimitName.ROOM_INVITATION, str(inviter_id))

    async def invite(
        self,
        room_id: PydanticObjectId,
        inviter_id: PydanticObjectId,
        invitee_ids: Sequence[PydanticObjectId],
    ) -> None:
        """An invitation for each invitee into the room; a pending one stays as it is,
        a dead one is replaced. Each new or renewed one is logged and published as an
        ``InvitationReceived`` on the invitee's route."""
        now = utc_now()
        for invitee_id in invitee_ids:
            fresh = {
                "inviter_id": inviter_id,
                "created_at": now,
                "expires_at": now + self._ttl,
            }
            # The id is chosen first: the event, logged before the insert, names it.
            invitation_id = PydanticObjectId()
            try:
                async with self._record(room_id, invitee_id, invitation_id) as event:
                    await RoomInvitationDoc(
                        id=invitation_id, room_id=room_id, invitee_id=invitee_id, **fresh
                    ).insert()
            except DuplicateKeyError:
                # One is there already (its entry is taken back): only a dead one is renewed.
                await self._renew_dead(room_id, invitee_id, fresh, now)
                continue
            await self._publisher.publish(event)

    async def _renew_dead(
        self,
        room_id: PydanticObjectId,
        invitee_id: PydanticObjectId,
        fresh: dict[str, object],
        now: datetime,
    ) -> None:
        """Renews the invitee's dead invitation into the room, which is news to them as a
        new one is; a pending one stays as it is, and nothing is logged or told."""
        dead = {"room_id": room_id, "invitee_id": invitee_id, "expires_at": {"$lte": now}}
        found = await RoomInvitationDoc.find_one(dead)
        if found is None or found.id is None:
            return
        with suppress(NothingChanged):
            async with self._record(room_id, invitee_id, found.id) as event:
                renewed = await RoomInvitationDoc.find({"_id": found.id, **dead}).update_many(
                    {"$set": fresh}
                )
                if not isinstance(renewed, UpdateResult) or not renewed.modified_count:
                    raise NothingChanged  # renewed or answered meanwhile
            await self._publisher.publish(event)

    def _record(
        self,
        room_id: PydanticObjectId,
        invitee_id: PydanticObjectId,
        invitation_id: PydanticObjectId,
    ) -> AbstractAsyncContextManager[InvitationReceived]:
        """The invitation's event, logged with its position, about the invitee (they
        get it though they are no member); the invitation is written in the block."""
        return self._event_log.record(
            room_id,
            lambda pos: InvitationReceived(
                user_id=str(invitee_id),
                room_id=str(room_id),
                invitation_id=str(invitation_id),
                pos=pos,
            ),
            about=[invitee_id],
        )

    async def pending_for(self, invitee_id: PydanticObjectId) -> list[RoomInvitationDoc]:
        """The user's live invitations, newest first."""
        return (
            await RoomInvitationDoc.find(
                {"invitee_id": invitee_id, "expires_at": {"$gt": utc_now()}}
            )
            .sort([("created_at", SortDirection.DESCENDING)])
            .limit(MAX_LISTED_INVITATIONS)
            .to_list()
        )

    async def pending(
        self, invitee_id: PydanticObjectId, invitation_id: PydanticObjectId
    ) -> RoomInvitationDoc:
        """The user's live invitation; NOT_FOUND for a dead one, another user's, or none
        (another user's invitation is not told apart from one that does not exist)."""
        found = await RoomInvitationDoc.get(invitation_id)
        if found is None or found.invitee_id != invitee_id or as_utc(found.expires_at) <= utc_now():
            raise NotFound(NO_SUCH_INVITATION)
        return found

    async def answered(self, invitation: RoomInvitationDoc) -> None:
        """Removes an answered invitation; NOT_FOUND if an answer raced this one and won."""
        gone = await RoomInvitationDoc.find(
            {"_id": invitation.id, "invitee_id": invitation.invitee_id}
        ).delete()
        if gone is None or gone.deleted_count != 1:
            raise NotFound(NO_SUCH_INVITATION)

    async def declined(self, invitation: RoomInvitationDoc) -> None:
        """Removes the declined invitation; its inviter may not invite the user again
        before the cooldown ends. NOT_FOUND if it was answered already."""
        await self.answered(invitation)
        await self._limits.spend(_cooldown(invitation.inviter_id, invitation.invitee_id))

    async def inviter_blocked(
        self, blocker_id: PydanticObjectId, blocked_id: PydanticObjectId
    ) -> None:
        """The blocked user's pending invitations of the blocker go, and a cooldown
        starts: once unblocked, they may not invite the blocker again at once."""
        await RoomInvitationDoc.find({"inviter_id": blocked_id, "invitee_id": blocker_id}).delete()
        await self._limits.spend(_cooldown(blocked_id, blocker_id))

    async def forget(self, user_id: PydanticObjectId) -> None:
        """A deleted account's pending invitations go, those it sent and those it got."""
        await RoomInvitationDoc.find(
            {"$or": [{"inviter_id": user_id}, {"invitee_id": user_id}]}
        ).delete()

    async def joined(self, room_id: PydanticObjectId, user_ids: Sequence[PydanticObjectId]) -> None:
        """Users who joined the room (by any path) have nothing left to answer there."""
        await RoomInvitationDoc.find(
            {"room_id": room_id, "invitee_id": {"$in": list(user_ids)}}
        ).delete()
