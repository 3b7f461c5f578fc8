"""Publishing stored messages and their edits, and again what a failed publish left behind.

A message is stored first, then published. A publish that fails (the broker is down
or slow) leaves the message's ``published`` flag false; the relay publishes such
messages once they are older than a grace period (so that a send in flight is not
doubled), in seq order per room. Subscribers drop what they already have by seq,
and push drops it by its delivery keys, so a message published twice is harmless.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

from beanie import PydanticObjectId, SortDirection
from pydantic import BaseModel, Field

from models import MessageDoc, RoomDoc, UserDoc
from models.time import utc_now
from observability.metrics import RELAY_BACKLOG
from pubsub import MessageAdded, MessageUpdated
from services.locks import Locks
from services.message_data import message_data
from services.publisher import EventPublisher

logger = logging.getLogger(__name__)

RELAY_BATCH = 500


def _message_lock(message_id: PydanticObjectId | None) -> str:
    return f"message:{message_id}"


class _RoomTag(BaseModel):
    """Projection: a room's id and membership tag."""

    id: PydanticObjectId = Field(alias="_id")
    members_tag: str | None = None


class PublishedMarks:
    """Records that messages were published, many in one update.

    The flag only tells the relay what is left to publish, so it may trail the
    publish a little: the relay flushes the marks before it looks, and a mark lost
    with the process makes the relay publish that message once more, which
    subscribers drop by seq and push drops by its delivery keys.

    On FerretDB 1.x an update writes back the whole document it read, so a mark
    written while an edit or a delete (on any instance) changes the message could
    put its old text back. The marks are written only to the messages whose lock
    (``MessageRelay.writing``) is free, all taken in one round trip; the others wait
    for the next flush.
    """

    def __init__(self, locks: Locks) -> None:
        self._ids: list[PydanticObjectId] = []
        # The rooms of the marked messages: they only narrow the update to the rooms'
        # shards on a cluster sharded by room (models.shard_keys).
        self._rooms: set[PydanticObjectId] = set()
        self._locks = locks

    def add(self, message_id: PydanticObjectId, room_id: PydanticObjectId) -> None:
        self._ids.append(message_id)
        self._rooms.add(room_id)

    async def flush(self) -> None:
        ids, self._ids = self._ids, []
        rooms, self._rooms = self._rooms, set()
        if not ids:
            return
        taken: list[int] = []
        try:
            async with self._locks.hold_free([_message_lock(i) for i in ids]) as taken:
                if taken:
                    held = [ids[position] for position in taken]
                    marked = {"room_id": {"$in": list(rooms)}, "_id": {"$in": held}}
                    await MessageDoc.find({**marked, "published": False}).update_many(
                        {"$set": {"published": True}}
                    )
        except Exception:
            self._ids.extend(ids)  # kept for the next flush
            self._rooms |= rooms
            raise
        held_positions = set(taken)
        self._ids.extend(i for position, i in enumerate(ids) if position not in held_positions)
        if self._ids:
            self._rooms |= rooms  # a superset of the waiting messages' rooms will do


class MessageRelay:
    """Publishes messages, marks them published, and relays what was left behind."""

    def __init__(
        self,
        publisher: EventPublisher,
        locks: Locks,
        *,
        grace_seconds: float,
        interval_seconds: float,
        idle_interval_seconds: float,
    ) -> None:
        self._publisher = publisher
        self._grace = timedelta(seconds=grace_seconds)
        self._interval = interval_seconds
        self._idle_interval = idle_interval_seconds
        self._locks = locks
        self.marks = PublishedMarks(locks)
        # When a publish last failed here (monotonic), so the relay knows to look soon.
        self.last_failure = time.monotonic()

    def writing(self, message_id: PydanticObjectId | None) -> AbstractAsyncContextManager[None]:
        """Holds the message's lock, shared by every instance: each update of a stored
        message is written under it (on FerretDB 1.x an update writes back the whole
        document it read, so two at once could put back text the other removed)."""
        return self._locks.hold(_message_lock(message_id))

    async def publish(
        self, message: MessageDoc, sender: UserDoc | None, members_tag: str | None = None
    ) -> None:
        """Publishes a stored message; on failure it is left to the relay."""
        event = MessageAdded(message_data(message, sender), members_tag)
        if await self._publisher.publish(event):
            assert message.id is not None
            self.marks.add(message.id, message.room_id)
            message.published = True
        else:
            self.last_failure = time.monotonic()

    async def publish_update(
        self, message: MessageDoc, sender: UserDoc | None, members_tag: str | None = None
    ) -> None:
        """Publishes a stored edit or delete; on failure it is left to the relay. The
        event carries the update's logged position, so a republish is the same event."""
        event = MessageUpdated(message_data(message, sender), members_tag, pos=message.update_pos)
        if await self._publisher.publish(event):
            # Only this very update: a later one that raced it stays for the relay.
            async with self.writing(message.id):
                await MessageDoc.find(
                    {
                        "room_id": message.room_id,
                        "_id": message.id,
                        "updated_at": message.updated_at,
                    }
                ).update_many({"$set": {"update_published": True}})
            message.update_published = True
        else:
            self.last_failure = time.monotonic()

    async def relay_unpublished(self) -> int:
        """Publishes stored messages (and edits) that a failed publish left behind;
        returns how many."""
        cutoff = utc_now() - self._grace
        await self.marks.flush()
        stale = await self._stale({"published": False, "created_at": {"$lt": cutoff}})
        updates = await self._stale({"update_published": False, "updated_at": {"$lt": cutoff}})
        RELAY_BACKLOG.set(len(stale) + len(updates))
        if not stale and not updates:
            return 0
        senders, tags = await self._senders_and_tags([*stale, *updates])
        relayed = 0
        for message in stale:
            await self.publish(message, senders.get(message.sender_id), tags.get(message.room_id))
            relayed += message.published
        for message in updates:
            sender = senders.get(message.sender_id)
            await self.publish_update(message, sender, tags.get(message.room_id))
            relayed += message.update_published
        if relayed:
            logger.info("relayed unpublished messages", extra={"count": relayed})
        return relayed

    @staticmethod
    async def _stale(query: dict[str, object]) -> list[MessageDoc]:
        return (
            await MessageDoc.find(query)
            .sort([("room_id", SortDirection.ASCENDING), ("seq", SortDirection.ASCENDING)])
            .limit(RELAY_BATCH)
            .to_list()
        )

    @staticmethod
    async def _senders_and_tags(
        stale: list[MessageDoc],
    ) -> tuple[dict[PydanticObjectId | None, UserDoc], dict[PydanticObjectId, str | None]]:
        senders = {
            user.id: user
            for user in await UserDoc.find(
                {"_id": {"$in": list({m.sender_id for m in stale})}}
            ).to_list()
        }
        # The rooms' membership tags as they are now: a stream that knows an older one
        # re-reads who is in the room before it delivers (live.room_stream).
        tags = {
            room.id: room.members_tag
            for room in await RoomDoc.find({"_id": {"$in": list({m.room_id for m in stale})}})
            .project(_RoomTag)
            .to_list()
        }
        return senders, tags

    def wait_after(self, relayed: int | None) -> float:
        """How long to wait after a relay pass that relayed this many (None: it failed):
        short while this instance's publishes fail (until the grace after the last
        failure has passed and a pass found nothing), long otherwise (what a crashed
        instance left behind)."""
        # A failure keeps the relay looking often until its message is surely taken.
        busy_for = self._grace.total_seconds() + 2 * self._interval
        recent_failure = time.monotonic() - self.last_failure < busy_for
        if relayed is None or relayed or recent_failure:
            return self._interval
        return self._idle_interval
