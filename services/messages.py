"""Messages: sending with a gap-free per-room seq, edits and deletes, and history.

A send is stored by its room's writer (``services.room_writer``), which gives the
room's waiting sends consecutive seqs from where the room stands and inserts them
together under the unique (room_id, seq) index: no seq is ever taken without its
message being stored, seqs have no gaps, and no update has to be atomic (on FerretDB
they are not). Only then is the message published.

An edit or a delete changes the stored message in place (its seq, sender, clientId
and createdAt stay; a delete really clears the stored text) and is then published
as a ``MessageUpdated`` through the relay, with the same store-then-relay guarantee.
The ``MessageUpdated`` is logged with its position (``services.room_event_log``)
before the message changes, and the message keeps that position in ``update_pos``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence

from beanie import PydanticObjectId, SortDirection

from backends.mongo import aggregate_rows
from errors import BadUserInput, Conflict, Forbidden, NotFound
from models import MessageDoc, RoomDoc, UserDoc
from models.time import utc_now
from observability.metrics import MESSAGES_SENT
from pubsub import MessageUpdated
from services import sequence
from services.membership_cache import SendingRoom
from services.mentions import mentioned_members
from services.message_data import message_data
from services.message_store import new_message
from services.paging import (
    Page,
    checked_page_size,
    cursor_number,
    decode_cursor,
    encode_cursor,
)
from services.rate_limits import LimitName, RateLimiter
from services.relay import MessageRelay
from services.replies import reply_target
from services.room_access import RoomAccess
from services.room_event_log import RoomEventLog
from services.room_writer import Outcome, RoomWriters
from services.search_windows import search_fields
from services.uploads import UploadService

logger = logging.getLogger(__name__)


MESSAGE_CURSOR = "msg"
DEFAULT_HISTORY_PAGE = 50
# Messages erased per query when an account is deleted.
ERASE_BATCH = 200


def _deletion() -> dict[str, object]:
    """The changes a delete makes to a stored message (with its text go its mentions
    and its search words)."""
    return {
        "text": "",
        "deleted": True,
        "updated_at": utc_now(),
        "mention_ids": [],
        "search_tokens": [],
        "search_keys": [],
    }


def message_cursor(message: MessageDoc) -> str:
    return encode_cursor(MESSAGE_CURSOR, str(message.seq))


def _cursor_seq(cursor: str) -> int:
    (value,) = decode_cursor(cursor, MESSAGE_CURSOR, 1)
    return cursor_number(value)


class MessageService:
    """The rules of messages."""

    def __init__(
        self,
        relay: MessageRelay,
        access: RoomAccess,
        max_text_chars: int,
        max_client_id_chars: int,
        limits: RateLimiter,
        writers: RoomWriters,
        uploads: UploadService,
        event_log: RoomEventLog,
    ) -> None:
        self._event_log = event_log
        self._writers = writers
        self._uploads = uploads
        self._relay = relay
        self._limits = limits
        self._access = access
        self._max_text_chars = max_text_chars
        self._max_client_id_chars = max_client_id_chars

    def _check(self, text: str, client_id: str | None, with_files: bool = False) -> None:
        if not text.strip() and not (with_files and text == ""):
            raise BadUserInput(
                "text must contain a non-whitespace character (or be empty, with attachments)"
            )
        if len(text) > self._max_text_chars:
            raise BadUserInput(f"text must be at most {self._max_text_chars} characters long")
        if client_id is not None and not 1 <= len(client_id) <= self._max_client_id_chars:
            raise BadUserInput(f"clientId must be 1 to {self._max_client_id_chars} characters long")

    async def send(
        self,
        room: SendingRoom,
        sender: UserDoc,
        text: str,
        client_id: str | None,
        *,
        reply_to_id: PydanticObjectId | None = None,
        attachment_ids: Sequence[PydanticObjectId] = (),
    ) -> MessageDoc:
        """Stores and publishes a message; a retried clientId returns the first one.
        ``reply_to_id`` must name a message of the same room; named uploads are checked
        and attached before it is stored (services.uploads). The sender's SEND_MESSAGE
        budget is spent by the caller, beside the session's check
        (``AccountService.user_for_token``)."""
        assert sender.id is not None
        self._check(text, client_id, with_files=bool(attachment_ids))
        if reply_to_id is not None:
            await reply_target(room.id, reply_to_id)
        mentions = await mentioned_members(text, room.member_ids)
        key = f"{sender.id}:{client_id}" if client_id else f"{sender.id}:~{secrets.token_hex(12)}"
        message = new_message(room.id, 0, sender.id, text, client_id, key, reply_to_id, mentions)
        assert message.id is not None  # chosen when made, as a driver would
        attached = (
            await self._uploads.claim(attachment_ids, sender, room.id, message.id, key)
            if attachment_ids
            else []
        )
        # The room's writer gives it the next free seq (services.room_writer); a
        # retried clientId is found when its insert hits the unique idempotency key.
        try:
            stored = await self._writers.store(message, room.seq_hint)
        except BaseException:
            await self._uploads.release(attached)
            raise
        assert stored.message.id is not None
        # The files go with the message stored under this send's key, which may be a
        # copy an earlier try (whose answer was lost) or a send of the same clientId
        # at the same moment stored.
        await self._uploads.confirm(attached, stored.message.id)
        if stored.outcome is Outcome.EARLIER:
            return await self._earlier_send(stored.message, room)
        if stored.outcome is Outcome.SHARED:
            return stored.message  # the send it shared is publishing it
        MESSAGES_SENT.inc()
        await self._relay.publish(stored.message, sender, room.members_tag)
        return stored.message

    async def _earlier_send(self, earlier: MessageDoc, room: SendingRoom) -> MessageDoc:
        """The message stored earlier under the same key, republished if it never was."""
        if earlier.room_id != room.id:
            raise Conflict("this clientId was already used for a message in another room")
        if not earlier.published:
            sender = await UserDoc.get(earlier.sender_id)
            await self._relay.publish(earlier, sender, room.members_tag)
        return earlier

    async def _own_message(
        self, message_id: PydanticObjectId, viewer: UserDoc
    ) -> tuple[MessageDoc, RoomDoc]:
        """The viewer's own message and its room; NOT_FOUND, or FORBIDDEN for a
        message of someone else or in a room the viewer is not in."""
        message = await MessageDoc.get(message_id)
        if message is None:
            raise NotFound("no such message")
        room = await self._access.require_member(message.room_id, viewer)
        if message.sender_id != viewer.id:
            raise Forbidden("only its sender may change a message")
        return message, room

    async def edit(self, message_id: PydanticObjectId, viewer: UserDoc, text: str) -> MessageDoc:
        """Replaces the text of the viewer's own message, and publishes the change."""
        await self._limits.hit(LimitName.EDIT_MESSAGE, str(viewer.id))
        self._check(text, None)
        message, room = await self._own_message(message_id, viewer)
        await self._access.require_open(room, viewer)
        if message.deleted:
            raise BadUserInput("a deleted message cannot be edited")
        now = utc_now()
        mentions = await mentioned_members(text, room.member_ids)
        # The edit's tokens replace the old ones: an edited message is found by its
        # new text only (in the windows of its first sending).
        changes: dict[str, object] = {
            "text": text,
            "edited_at": now,
            "updated_at": now,
            "mention_ids": mentions,
            **search_fields(text, message.created_at),
        }
        return await self._update(message, room.members_tag, viewer, changes)

    async def delete(self, message_id: PydanticObjectId, viewer: UserDoc) -> MessageDoc:
        """Deletes the viewer's own message: its seq stays, its stored text is cleared.
        Deleting it again returns it as it is."""
        await self._limits.hit(LimitName.DELETE_MESSAGE, str(viewer.id))
        message, room = await self._own_message(message_id, viewer)
        if message.deleted:
            return message
        deleted = await self._update(message, room.members_tag, viewer, _deletion())
        await self._uploads.discard_of_messages([message_id])
        return deleted

    async def erase_sent_by(self, sender: UserDoc) -> int:
        """Erases every message of the sender as a delete does (the seq stays, the text
        goes, live viewers get the MessageUpdated); returns how many. Idempotent: the
        messages erased already are not looked at again."""
        erased = 0
        while (
            batch := await MessageDoc.find({"sender_id": sender.id, "deleted": False})
            .limit(ERASE_BATCH)
            .to_list()
        ):
            tags = {
                room.id: room.members_tag
                for room in await RoomDoc.find(
                    {"_id": {"$in": list({message.room_id for message in batch})}}
                ).to_list()
            }
            for message in batch:
                await self._update(message, tags.get(message.room_id), sender, _deletion())
                erased += 1
            await self._uploads.discard_of_messages([m.id for m in batch if m.id is not None])
        return erased

    async def _update(
        self,
        message: MessageDoc,
        members_tag: str | None,
        viewer: UserDoc,
        changes: dict[str, object],
    ) -> MessageDoc:
        """Stores the changes (left for the relay until published), then publishes them.

        Written under the message's lock, shared by every instance, and only to the
        message as it stands under it: a delete that came first (here or on another
        instance) wins, and nothing written later puts its text back.
        """
        changes = {**changes, "update_published": False}
        async with self._relay.writing(message.id):
            current = await MessageDoc.get(message.id)
            if current is None:
                raise NotFound("no such message")
            if current.deleted:
                if changes.get("deleted"):
                    return current  # deleted meanwhile: deleting again returns it as it is
                raise BadUserInput("a deleted message cannot be edited")
            for field, value in changes.items():
                setattr(current, field, value)
            # Logged as it will be published, before the message changes: the update
            # keeps the event's position, so a republish by the relay is the same event.
            async with self._event_log.record(
                current.room_id,
                lambda pos: MessageUpdated(message_data(current, viewer), members_tag, pos=pos),
            ) as event:
                await MessageDoc.find_one({"_id": message.id, "deleted": False}).update(
                    {"$set": {**changes, "update_pos": event.pos}}
                )
            current.update_pos = event.pos
        await self._relay.publish_update(current, viewer, members_tag)
        return current

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
