"""Messages."""

from __future__ import annotations

from datetime import datetime

from beanie import Document, PydanticObjectId
from pydantic import Field
from pymongo import ASCENDING, DESCENDING, IndexModel

from models.time import utc_now


class MessageDoc(Document):
    """One message. ``(room_id, seq)`` and ``idempotency_key`` are unique by index.

    ``idempotency_key`` is ``<sender>:<clientId>``, or a random key when the client sent
    no clientId, so that it is always present (see ``RoomDoc.pair_key`` for why).
    ``published`` stays false until the message's event reached the broker; the relay
    publishes what a failed send left behind. An edit or a delete sets ``updated_at``
    and clears ``update_published`` the same way, until its ``MessageUpdated`` event
    reached the broker. ``reply_to_id`` names a message of the same room;
    ``mention_ids`` the members named as ``@username`` in the text (a delete clears them).

    ``search_tokens`` are the words of the text as message search looks them up
    (``services.search_tokens``), ``search_keys`` the same with the time windows of
    ``created_at`` (``services.search_windows``); both empty once deleted, and missing
    on messages stored before search until the start-up backfill
    (``services.message_search``) adds them.
    """

    room_id: PydanticObjectId
    seq: int
    sender_id: PydanticObjectId
    text: str
    client_id: str | None = None
    idempotency_key: str
    created_at: datetime = Field(default_factory=utc_now)
    edited_at: datetime | None = None
    deleted: bool = False
    published: bool = False
    updated_at: datetime | None = None
    update_published: bool = True
    reply_to_id: PydanticObjectId | None = None
    mention_ids: list[PydanticObjectId] = Field(default_factory=list)
    search_tokens: list[str] | None = None
    search_keys: list[str] | None = None
    # Its place among all room events (``services.event_positions``), taken by its
    # room's writer; the position of its newest edit or delete in ``update_pos``.
    # None on messages stored before positions.
    pos: int | None = None
    update_pos: int | None = None

    class Settings:
        name = "messages"
        indexes = [
            IndexModel(
                [("room_id", ASCENDING), ("seq", DESCENDING)], unique=True, name="room_seq_unique"
            ),
            IndexModel([("idempotency_key", ASCENDING)], unique=True, name="idempotency_unique"),
            # The same key unique per room: what takes the place of idempotency_unique
            # once the collection is sharded by room (models.shard_keys). It holds for
            # every stored message already, so building it refuses none.
            IndexModel(
                [("room_id", ASCENDING), ("idempotency_key", ASCENDING)],
                unique=True,
                name="room_idempotency_unique",
            ),
            IndexModel([("room_id", ASCENDING), ("pos", ASCENDING)], name="room_pos"),
            # Every room's events in a span of positions (``services.recent_room_events``).
            IndexModel([("pos", ASCENDING)], name="pos"),
            IndexModel([("published", ASCENDING), ("created_at", ASCENDING)], name="unpublished"),
            IndexModel(
                [("update_published", ASCENDING), ("updated_at", ASCENDING)],
                name="unpublished_updates",
            ),
        ]
