"""A stored message as events and streams carry it."""

from __future__ import annotations

from models import MessageDoc, UserDoc
from models.time import as_utc
from pubsub import MessageData

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
        created_at=as_utc(message.created_at),
        edited_at=as_utc(message.edited_at) if message.edited_at else None,
        deleted=message.deleted,
        reply_to_id=str(message.reply_to_id) if message.reply_to_id else None,
        mention_ids=() if message.deleted else tuple(map(str, message.mention_ids)),
        pos=message.pos,
    )
