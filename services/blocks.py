"""Blocking: a user stops another from reaching them.

A block ends the friendship of the two (so presence stops both ways, through the
friendship events ``FriendService`` publishes), declines the pending friend
requests between them, and drops the blocked user's group invitations of the
blocker (who may not be invited by them again for a cooldown, even once
unblocked). From then on the blocked user cannot open a DIRECT room with the
blocker, add or invite them to a group, or send them a friend request
(``services.blocklist`` says so to the other services). A DIRECT room of the two
that already exists is closed (``RoomService.require_open`` asks
``blocked_between``); in a GROUP they share, the blocker gets no push, typing or
read receipt of the blocked user (the push worker and ``RoomAccess.hidden_from`` ask
``blockers_of``), while the blocked user's messages still show.

These questions come with every message, typing notice and receipt. Each user's
blockers are kept a while, under the user's block epoch in Redis: every block and
unblock of a user moves that user's epoch, so a kept answer is used only while no
block of the user changed, on whichever instance the change was made; asking costs
one Redis read.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress

from beanie import PydanticObjectId, SortDirection
from beanie.operators import Or
from pymongo.errors import DuplicateKeyError

from backends.redis import KeyValueStore
from backends.redis_slots import read_many
from errors import BadUserInput, NotFound
from models import BlockDoc, UserDoc
from services.accounts import Recent
from services.friends import FriendService
from services.invitations import InvitationService
from services.rate_limits import LimitName, RateLimiter

BLOCK_EPOCH_PREFIX = "plop:blocks:epoch:"
# Senders whose blockers the push worker keeps, and for how long at most: the epoch
# makes a kept answer exact; the expiry only bounds what a lost epoch move costs.
KEPT_SENDERS = 10_000
KEPT_SENDER_SECONDS = 60.0


def _epoch_key(blocked_id: PydanticObjectId) -> str:
    return f"{BLOCK_EPOCH_PREFIX}{blocked_id}"


class BlockService:
    """The rules of blocking."""

    def __init__(
        self,
        redis: KeyValueStore,
        friends: FriendService,
        invitations: InvitationService,
        limits: RateLimiter,
    ) -> None:
        self._redis = redis
        self._friends = friends
        self._invitations = invitations
        self._limits = limits
        self._kept: Recent[tuple[str, frozenset[PydanticObjectId]]] = Recent(
            KEPT_SENDERS, KEPT_SENDER_SECONDS
        )

    async def _require_other(self, viewer: UserDoc, user_id: PydanticObjectId) -> None:
        # Blocks and unblocks share a budget: each moves an epoch every instance reads.
        await self._limits.hit(LimitName.BLOCK_USER, str(viewer.id))
        if user_id == viewer.id:
            raise BadUserInput("you cannot block or unblock yourself")
        if await UserDoc.get(user_id) is None:
            raise NotFound("no such user")

    async def block(self, viewer: UserDoc, user_id: PydanticObjectId) -> None:
        """Blocks the user (idempotent); ends their friendship and pending requests."""
        assert viewer.id is not None
        await self._require_other(viewer, user_id)
        with suppress(DuplicateKeyError):  # blocked already: blocking again changes nothing
            await BlockDoc(blocker_id=viewer.id, blocked_id=user_id).insert()
        # After the write: a reader that sees the new epoch also sees the block.
        await self._redis.incr(_epoch_key(user_id))
        # Again on a repeat too: a request sent in a race with the first block goes.
        await self._friends.sever(viewer.id, user_id)
        await self._invitations.inviter_blocked(viewer.id, user_id)

    async def unblock(self, viewer: UserDoc, user_id: PydanticObjectId) -> None:
        """Lifts the viewer's block of the user, if there is one (idempotent)."""
        assert viewer.id is not None
        await self._require_other(viewer, user_id)
        await BlockDoc.find(
            BlockDoc.blocker_id == viewer.id, BlockDoc.blocked_id == user_id
        ).delete()
        await self._redis.incr(_epoch_key(user_id))

    async def forget(self, user_id: PydanticObjectId) -> None:
        """Removes every block by or of the user (the deletion of an account)."""
        blocks = await BlockDoc.find(
            Or(BlockDoc.blocker_id == user_id, BlockDoc.blocked_id == user_id)
        ).to_list()
        if not blocks:
            return
        await BlockDoc.find({"_id": {"$in": [block.id for block in blocks]}}).delete()
        for blocked_id in {block.blocked_id for block in blocks}:
            await self._redis.incr(_epoch_key(blocked_id))

    async def blocked_users(self, viewer: UserDoc) -> list[UserDoc]:
        """The users the viewer blocks, by username."""
        blocked = await BlockDoc.find(BlockDoc.blocker_id == viewer.id).to_list()
        if not blocked:
            return []
        return (
            await UserDoc.find({"_id": {"$in": [block.blocked_id for block in blocked]}})
            .sort([("username", SortDirection.ASCENDING)])
            .to_list()
        )

    async def blockers_of(
        self, sender_id: PydanticObjectId, among: Iterable[PydanticObjectId]
    ) -> set[PydanticObjectId]:
        """Those of the users who block the sender (kept per sender; see the module)."""
        candidates = set(among)
        if not candidates:
            return set()
        (blockers,) = await self._blockers([sender_id])
        return candidates & blockers

    async def blocked_between(self, first: PydanticObjectId, second: PydanticObjectId) -> bool:
        """Whether either of the two users blocks the other."""
        of_first, of_second = await self._blockers([first, second])
        return second in of_first or first in of_second

    async def _blockers(
        self, user_ids: list[PydanticObjectId]
    ) -> list[frozenset[PydanticObjectId]]:
        """Who blocks each of the users: their epochs in one read, the store only for a
        user whose epoch moved since their blockers were kept."""
        # One MGET on a server; per slot on a cluster (each user is a subject of its own).
        epochs = await read_many(self._redis, [_epoch_key(user_id) for user_id in user_ids])
        found: list[frozenset[PydanticObjectId]] = []
        for user_id, raw in zip(user_ids, epochs, strict=True):
            epoch = str(raw or "0")
            kept = self._kept.get(str(user_id))
            if kept is None or kept[0] != epoch:
                blocks = await BlockDoc.find(BlockDoc.blocked_id == user_id).to_list()
                kept = (epoch, frozenset(block.blocker_id for block in blocks))
                self._kept.keep(str(user_id), kept)
            found.append(kept[1])
        return found
