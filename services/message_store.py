"""New messages written as they are: the send path's inserts, without Beanie's layers.

A sent message's shape is known field by field when it is made (the send path made
every value itself), so it is built without validation and written with the
collection's own ``insert_many``: Beanie's insert would validate it again, encode it
through its generic encoder and track its state, which was a sixth of a send's CPU.
The stored document is field for field what Beanie would store.
"""

from __future__ import annotations

from typing import Any

from beanie import PydanticObjectId
from pymongo.errors import BulkWriteError, DuplicateKeyError

from models import MessageDoc
from models.time import utc_now
from services import sequence
from services.rooms import RoomService
from services.search_windows import search_fields

# The server's code for a write refused by a unique index.
DUPLICATE_KEY = 11_000

# Every field Beanie stores for a message: all but the id (stored as ``_id``) and the
# revision id, which Beanie stores only for documents that use revisions.
_STORED_FIELDS = tuple(
    name for name in MessageDoc.model_fields if name not in ("id", "revision_id")
)


def new_message(
    room_id: PydanticObjectId,
    seq: int,
    sender_id: PydanticObjectId,
    text: str,
    client_id: str | None,
    idempotency_key: str,
    reply_to_id: PydanticObjectId | None = None,
    mention_ids: list[PydanticObjectId] | None = None,
) -> MessageDoc:
    """A message not stored yet, with its id already chosen (as a driver would)."""
    created_at = utc_now()
    message: MessageDoc = MessageDoc.model_construct(
        id=PydanticObjectId(),
        room_id=room_id,
        seq=seq,
        sender_id=sender_id,
        text=text,
        client_id=client_id,
        idempotency_key=idempotency_key,
        created_at=created_at,
        reply_to_id=reply_to_id,
        mention_ids=mention_ids or [],
        **search_fields(text, created_at),
    )
    return message


def _stored_document(message: MessageDoc) -> dict[str, Any]:
    document: dict[str, Any] = {name: getattr(message, name) for name in _STORED_FIELDS}
    document["_id"] = message.id
    return document


class MongoMessageInserts:
    """The room writers' store (``services.room_writer.MessageInserts``) in the database."""

    def __init__(self, rooms: RoomService) -> None:
        self._rooms = rooms

    async def insert_ordered(self, messages: list[MessageDoc]) -> int | None:
        documents = [_stored_document(message) for message in messages]
        collection = MessageDoc.get_pymongo_collection()
        if len(documents) == 1:
            # A room's lone send (the usual case) skips the driver's bulk machinery:
            # insert_one is one command with less of the driver's work around it.
            try:
                await collection.insert_one(documents[0])
            except DuplicateKeyError:
                return 0
            return None
        try:
            # Ordered: the server stops at the first refused document (FerretDB 1.x
            # inserts an ordered batch one document at a time, the same way).
            await collection.insert_many(documents, ordered=True)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            if not errors or errors[0].get("code") != DUPLICATE_KEY:
                raise
            return int(errors[0]["index"])
        return None

    async def stored_under(self, idempotency_key: str) -> MessageDoc | None:
        return await MessageDoc.find_one(MessageDoc.idempotency_key == idempotency_key)

    async def newest_seq(self, room_id: PydanticObjectId, taken: int) -> int:
        return await sequence.newest_seq_from(room_id, taken)

    async def stored_up_to(self, message: MessageDoc) -> None:
        await self._rooms.stored_message(message.room_id, message.seq, message.created_at)
