"""A new message written as it is: the send path's one insert, without Beanie's layers.

A sent message's shape is known field by field when it is made (the send path made
every value itself), so it is built without validation and written with the
collection's own ``insert_one``: Beanie's insert would validate it again, encode it
through its generic encoder and track its state, which was a sixth of a send's CPU.
The stored document is field for field what Beanie would store.
"""

from __future__ import annotations

from typing import Any

from beanie import PydanticObjectId

from models import MessageDoc
from models.time import utc_now

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
) -> MessageDoc:
    """A message not stored yet, with its id already chosen (as a driver would)."""
    message: MessageDoc = MessageDoc.model_construct(
        id=PydanticObjectId(),
        room_id=room_id,
        seq=seq,
        sender_id=sender_id,
        text=text,
        client_id=client_id,
        idempotency_key=idempotency_key,
        created_at=utc_now(),
    )
    return message


async def insert_message(message: MessageDoc) -> None:
    """Stores a new message; DuplicateKeyError if its seq or idempotency key is taken."""
    document: dict[str, Any] = {name: getattr(message, name) for name in _STORED_FIELDS}
    document["_id"] = message.id
    await MessageDoc.get_pymongo_collection().insert_one(document)
