"""Messages: sending with a gap-free per-room seq, history, and the publish relay.

A sender tries seq = hint + 1, where the room's ``seq_hint`` is never above the newest
stored seq, and walks up one at a time while the unique (room_id, seq) index refuses
the insert. Every seq up to the newest is taken, so the first free one is the newest
+ 1: no seq is ever taken without its message being stored, seqs have no gaps, and no
update has to be atomic (on FerretDB they are not).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta

from beanie import PydanticObjectId, SortDirection
from pymongo.errors import DuplicateKeyError

from backends.mongo import aggregate_rows
from errors import BadUserInput, Conflict, Unavailable
from models import MessageDoc, RoomDoc, UserDoc
from models.time import as_utc, utc_now
from pubsub import MessageAdded, MessageData
from services import sequence
from services.events import EventPublisher
from services.paging import Page, checked_page_size, decode_cursor, encode_cursor
from services.rooms import RoomService

logger = logging.getLogger(__name__)


MESSAGE_CURSOR = "msg"
DEFAULT_HISTORY_PAGE = 50
# Attempts at taking the next seq before a send gives up as UNAVAILABLE; each lost
# attempt means another message of the room was stored, so this is only reached
# under a flood far beyond what one room sees.
MAX_SEQ_ATTEMPTS = 200
RELAY_BATCH = 500


def message_cursor(message: MessageDoc) -> str:
    return encode_cursor(MESSAGE_CURSOR, str(message.seq))


def _cursor_seq(cursor: str) -> int:
    (value,) = decode_cursor(cursor, MESSAGE_CURSOR, 1)
    if not value.isdigit():
        raise BadUserInput("the cursor is not valid")
    return int(value)


# Shown for a sender whose account cannot be read, so that a message is never left
# out of history or a stream (that would open a gap in its room's seqs).
UNKNOWN_SENDER_NAME = "Unknown user"


def message_data(message: MessageDoc, sender: UserDoc | None) -> MessageData:
    """The message as events carry it."""
    return MessageData(
        id=str(message.id),
        room_id=str(message.room_id),
        seq=message.seq,
        sender_id=str(message.sender_id),
        sender_username=sender.username if sender else "",
        sender_display_name=sender.display_name if sender else UNKNOWN_SENDER_NAME,
        text="" if message.deleted else message.text,
        client_id=message.client_id,
        created_at=as_utc(message.created_at).isoformat(),
        edited_at=as_utc(message.edited_at).isoformat() if message.edited_at else None,
        deleted=message.deleted,
    )


class PublishedMarks:
    """Records that messages were published, many in one update.

    The flag only tells the relay what is left to publish, so it may trail the
    publish a little: the relay flushes the marks before it looks, and a mark lost
    with the process makes the relay publish that message once more, which
    subscribers drop by seq and push drops by its delivery keys.
    """

    def __init__(self) -> None:
        self._ids: list[PydanticObjectId] = []

    def add(self, message_id: PydanticObjectId) -> None:
        self._ids.append(message_id)

    async def flush(self) -> None:
        ids, self._ids = self._ids, []
        if not ids:
            return
        try:
            await MessageDoc.find({"_id": {"$in": ids}}).update_many({"$set": {"published": True}})
        except Exception:
            self._ids.extend(ids)  # kept for the next flush
            raise

    async def flush_forever(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.flush()
            except Exception:
                logger.exception("marking messages published failed; retrying")


class MessageService:
    """The rules of messages."""

    def __init__(
        self,
        publisher: EventPublisher,
        rooms: RoomService,
        max_text_chars: int,
        max_client_id_chars: int,
    ) -> None:
        self._publisher = publisher
        self._rooms = rooms
        self._max_text_chars = max_text_chars
        self._max_client_id_chars = max_client_id_chars
        self.published_marks = PublishedMarks()
        # When a publish last failed here (monotonic), so the relay knows to look soon.
        self.last_publish_failure = time.monotonic()

    def _check(self, text: str, client_id: str | None) -> None:
        if not text.strip():
            raise BadUserInput("text must contain a non-whitespace character")
        if len(text) > self._max_text_chars:
            raise BadUserInput(f"text must be at most {self._max_text_chars} characters long")
        if client_id is not None and not 1 <= len(client_id) <= self._max_client_id_chars:
            raise BadUserInput(f"clientId must be 1 to {self._max_client_id_chars} characters long")

    async def send(
        self, room: RoomDoc, sender: UserDoc, text: str, client_id: str | None
    ) -> MessageDoc:
        """Stores and publishes a message; a retried clientId returns the first one."""
        assert room.id is not None and sender.id is not None
        self._check(text, client_id)
        key = f"{sender.id}:{client_id}" if client_id else f"{sender.id}:~{secrets.token_hex(12)}"
        # A retried clientId is found when its insert hits the unique idempotency key.
        # The room was read a moment ago to authorize the sender: its hint is as fresh
        # as another read would be, and a stale one only costs a walk up.
        candidate = room.seq_hint + 1
        for attempt in range(MAX_SEQ_ATTEMPTS):
            message = MessageDoc(
                room_id=room.id,
                seq=candidate,
                sender_id=sender.id,
                text=text,
                client_id=client_id,
                idempotency_key=key,
            )
            try:
                await message.insert()
                break
            except DuplicateKeyError:
                if client_id and (earlier := await self._earlier_send(key, room)):
                    return earlier
                # That seq is taken: try the next. Every few losses, jump to the hint
                # (other senders moved it) and back off a little, jittered, so that a
                # burst of senders does not retry in lockstep.
                candidate += 1
                if attempt % 4 == 3:
                    candidate = max(candidate, await sequence.seq_hint(room.id) + 1)
                    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
        else:
            raise Unavailable("the room is too busy right now; retry the same clientId")
        await self._rooms.stored_message(room.id, message.seq, message.created_at)
        await self._publish(message, sender)
        return message

    async def _earlier_send(self, key: str, room: RoomDoc) -> MessageDoc | None:
        """The message stored under this idempotency key, republished if it never was."""
        earlier = await MessageDoc.find_one(MessageDoc.idempotency_key == key)
        if earlier is None:
            return None
        if earlier.room_id != room.id:
            raise Conflict("this clientId was already used for a message in another room")
        if not earlier.published:
            await self._publish(earlier, await UserDoc.get(earlier.sender_id))
        return earlier

    async def _publish(self, message: MessageDoc, sender: UserDoc | None) -> None:
        if await self._publisher.publish(MessageAdded(message_data(message, sender))):
            assert message.id is not None
            self.published_marks.add(message.id)
            message.published = True
        else:
            self.last_publish_failure = time.monotonic()

    async def latest_seq(self, room_id: PydanticObjectId) -> int:
        """The seq of the room's newest message; 0 for an empty room."""
        return await sequence.latest_seq(room_id)

    async def after(
        self, room_id: PydanticObjectId, after_seq: int, limit: int, before_seq: int | None = None
    ) -> list[MessageDoc]:
        """Up to ``limit`` messages with after_seq < seq (< before_seq), ascending."""
        bounds: dict[str, int] = {"$gt": after_seq}
        if before_seq is not None:
            bounds["$lt"] = before_seq
        return (
            await MessageDoc.find({"room_id": room_id, "seq": bounds})
            .sort(("seq", SortDirection.ASCENDING))
            .limit(limit)
            .to_list()
        )

    async def unread_counts(
        self, viewer_id: PydanticObjectId, markers: Mapping[PydanticObjectId, int]
    ) -> dict[PydanticObjectId, int]:
        """Per room (given with its read marker), the messages after the marker that the
        viewer did not send: one aggregation for all the rooms."""
        if not markers:
            return {}
        after = [{"room_id": room_id, "seq": {"$gt": seq}} for room_id, seq in markers.items()]
        counts = await aggregate_rows(
            MessageDoc,
            [
                {"$match": {"$or": after, "sender_id": {"$ne": viewer_id}}},
                {"$group": {"_id": "$room_id", "count": {"$sum": 1}}},
            ],
        )
        found = {PydanticObjectId(row["_id"]): int(row["count"]) for row in counts}
        return {room_id: found.get(room_id, 0) for room_id in markers}

    async def history(
        self,
        room: RoomDoc,
        first: int | None,
        after: str | None,
        last: int | None,
        before: str | None,
    ) -> Page[MessageDoc]:
        """A page of history in ascending seq order, Relay-style (see the contract)."""
        assert room.id is not None
        if (first is not None or after is not None) and (last is not None or before is not None):
            raise BadUserInput("page forward (first/after) or back (last/before), not both")
        if first is not None or after is not None:
            size = checked_page_size(first, "first", DEFAULT_HISTORY_PAGE)
            after_seq = _cursor_seq(after) if after is not None else 0
            rows = await self.after(room.id, after_seq, size + 1)
            return Page(
                rows[:size], has_next_page=len(rows) > size, has_previous_page=after_seq > 0
            )
        size = checked_page_size(last, "last", DEFAULT_HISTORY_PAGE)
        query: dict[str, object] = {"room_id": room.id}
        if before is not None:
            query["seq"] = {"$lt": _cursor_seq(before)}
        rows = (
            await MessageDoc.find(query)
            .sort(("seq", SortDirection.DESCENDING))
            .limit(size + 1)
            .to_list()
        )
        page = list(reversed(rows[:size]))
        return Page(page, has_next_page=before is not None, has_previous_page=len(rows) > size)

    async def relay_unpublished(self, grace: timedelta) -> int:
        """Publishes stored messages that a failed send left unpublished; returns how many."""
        cutoff = utc_now() - grace
        await self.published_marks.flush()
        stale = (
            await MessageDoc.find({"published": False, "created_at": {"$lt": cutoff}})
            .sort([("room_id", SortDirection.ASCENDING), ("seq", SortDirection.ASCENDING)])
            .limit(RELAY_BATCH)
            .to_list()
        )
        if not stale:
            return 0
        senders = {
            user.id: user
            for user in await UserDoc.find(
                {"_id": {"$in": list({m.sender_id for m in stale})}}
            ).to_list()
        }
        relayed = 0
        for message in stale:
            await self._publish(message, senders.get(message.sender_id))
            relayed += message.published
        if relayed:
            logger.info("relayed unpublished messages", extra={"count": relayed})
        return relayed
