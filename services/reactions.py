"""Reactions: members put emoji on the messages of their rooms.

A reaction is one ``ReactionDoc`` per (message, user, emoji), unique by index: the
same reaction added twice, on one instance or on several at once, is stored once,
and only the add that stored it is published. The caps (distinct emoji on a
message, emoji of one member on a message) are read before the insert, so two adds
racing past a cap may both land: they bound what a client can pile up, they are not
an invariant. The ``ReactionChanged`` event is logged with its position before the
change is stored (``services.room_event_log``) and published once it is stored;
a reader shows the message's reactions as they stand when it renders, so an event
lost with the broker down leaves nothing stale behind the next one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass

from beanie import PydanticObjectId, SortDirection
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from backends.mongo import aggregate_rows
from errors import BadUserInput, NotFound
from models import MessageDoc, ReactionDoc, RoomDoc, UserDoc
from pubsub import ReactionChanged
from services.publisher import EventPublisher
from services.rate_limits import LimitName, RateLimiter
from services.reaction_emoji import one_emoji
from services.room_access import RoomAccess
from services.room_event_log import NothingChanged, RoomEventLog

DELETED_MESSAGE = "a deleted message has no reactions"


class _OwnEmoji(BaseModel):
    emoji: str


@dataclass(frozen=True, slots=True)
class ReactionGroupView:
    """One emoji's reactions on a message as one viewer sees them."""

    emoji: str
    count: int
    reacted_by_viewer: bool
    # Everyone who reacted with it, oldest first.
    user_ids: tuple[PydanticObjectId, ...]


def grouped(
    reactions: Iterable[ReactionDoc], viewer_id: PydanticObjectId
) -> list[ReactionGroupView]:
    """One group per emoji, most used first; among equals, the one used first first.

    ``reactions`` come oldest first (``reactions_of``), so each group's users do too.
    """
    users: dict[str, list[PydanticObjectId]] = defaultdict(list)
    for reaction in reactions:
        users[reaction.emoji].append(reaction.user_id)
    first_use = {emoji: position for position, emoji in enumerate(users)}
    ordered = sorted(users, key=lambda emoji: (-len(users[emoji]), first_use[emoji]))
    return [
        ReactionGroupView(
            emoji=emoji,
            count=len(users[emoji]),
            reacted_by_viewer=viewer_id in users[emoji],
            user_ids=tuple(users[emoji]),
        )
        for emoji in ordered
    ]


async def reactions_of(
    message_ids: Iterable[PydanticObjectId],
) -> dict[PydanticObjectId, list[ReactionDoc]]:
    """Every reaction on each message, oldest first: one query for all of them."""
    wanted = list(set(message_ids))
    found: dict[PydanticObjectId, list[ReactionDoc]] = {message_id: [] for message_id in wanted}
    if not wanted:
        return found
    for reaction in (
        await ReactionDoc.find({"message_id": {"$in": wanted}})
        .sort(("created_at", SortDirection.ASCENDING), ("_id", SortDirection.ASCENDING))
        .to_list()
    ):
        found[reaction.message_id].append(reaction)
    return found


class ReactionService:
    """The rules of reactions."""

    def __init__(
        self,
        access: RoomAccess,
        publisher: EventPublisher,
        limits: RateLimiter,
        event_log: RoomEventLog,
        max_emoji_per_message: int,
        max_per_user_per_message: int,
    ) -> None:
        self._event_log = event_log
        self._access = access
        self._publisher = publisher
        self._limits = limits
        self._max_emoji_per_message = max_emoji_per_message
        self._max_per_user_per_message = max_per_user_per_message

    async def _reactable(
        self, message_id: PydanticObjectId, viewer: UserDoc
    ) -> tuple[MessageDoc, RoomDoc]:
        """The message and its room, if the viewer may react to it: a member (FORBIDDEN
        otherwise, and in a DIRECT room a block closed), a message not deleted."""
        message = await MessageDoc.get(message_id)
        if message is None:
            raise NotFound("no such message")
        room = await self._access.require_writer(message.room_id, viewer)
        if message.deleted:
            raise BadUserInput(DELETED_MESSAGE)
        return message, room

    async def add(self, message_id: PydanticObjectId, viewer: UserDoc, emoji: str) -> MessageDoc:
        """Puts the emoji on the message for the viewer; adding it again changes nothing."""
        assert viewer.id is not None
        await self._limits.hit(LimitName.REACT, str(viewer.id))
        emoji = one_emoji(emoji)
        message, room = await self._reactable(message_id, viewer)
        assert message.id is not None
        own = {
            each.emoji
            for each in await ReactionDoc.find({"message_id": message.id, "user_id": viewer.id})
            .project(_OwnEmoji)
            .to_list()
        }
        if emoji in own:
            return message
        if len(own) >= self._max_per_user_per_message:
            raise BadUserInput(
                f"one member may put at most {self._max_per_user_per_message} emoji on a message"
            )
        await self._check_new_emoji(message.id, emoji)
        try:
            async with self._record(message, room, viewer, emoji, added=True) as event:
                await ReactionDoc(
                    message_id=message.id, room_id=message.room_id, user_id=viewer.id, emoji=emoji
                ).insert()
        except DuplicateKeyError:
            return message  # the same reaction, stored meanwhile by a concurrent add
        await self._publisher.publish(event)
        return message

    async def _check_new_emoji(self, message_id: PydanticObjectId, emoji: str) -> None:
        """BAD_USER_INPUT if the emoji would be one too many distinct emoji."""
        if await ReactionDoc.find_one({"message_id": message_id, "emoji": emoji}):
            return
        distinct = await aggregate_rows(
            ReactionDoc,
            [{"$match": {"message_id": message_id}}, {"$group": {"_id": "$emoji"}}],
        )
        if len(distinct) >= self._max_emoji_per_message:
            raise BadUserInput(
                f"a message may carry at most {self._max_emoji_per_message} different emoji"
            )

    async def remove(self, message_id: PydanticObjectId, viewer: UserDoc, emoji: str) -> MessageDoc:
        """Takes the viewer's emoji off the message; removing it again changes nothing."""
        await self._limits.hit(LimitName.REACT, str(viewer.id))
        emoji = one_emoji(emoji)
        message, room = await self._reactable(message_id, viewer)
        mine = {"message_id": message.id, "user_id": viewer.id, "emoji": emoji}
        if await ReactionDoc.find_one(mine) is None:
            return message  # nothing to take off: nothing logged or told
        with suppress(NothingChanged):
            async with self._record(message, room, viewer, emoji, added=False) as event:
                removed = await ReactionDoc.find_one(mine).delete()
                if removed is None or not removed.deleted_count:
                    raise NothingChanged  # a concurrent remove took it off first
            await self._publisher.publish(event)
        return message

    def _record(
        self, message: MessageDoc, room: RoomDoc, viewer: UserDoc, emoji: str, added: bool
    ) -> AbstractAsyncContextManager[ReactionChanged]:
        """The change's event, logged with its position; the change is made in the block."""
        return self._event_log.record(
            message.room_id,
            lambda pos: ReactionChanged(
                room_id=str(message.room_id),
                message_id=str(message.id),
                seq=message.seq,
                user_id=str(viewer.id),
                username=viewer.username,
                display_name=viewer.display_name,
                emoji=emoji,
                added=added,
                members_tag=room.members_tag,
                pos=pos,
            ),
        )
