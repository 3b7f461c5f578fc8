"""Made-up events of the wire's shapes, for the benchmark and the tests alike."""

from __future__ import annotations

from datetime import UTC, datetime

from pubsub import MessageAdded, MessageData


def room_message(room_id: str, seq: int) -> MessageAdded:
    """A message event of an ordinary size, as the consumer would read one."""
    return MessageAdded(
        MessageData(
            id=f"{room_id}-{seq}",
            room_id=room_id,
            seq=seq,
            sender_id="bench",
            sender_username="bench",
            sender_display_name="Bench",
            text="a message of an ordinary length, as a chat sends them",
            client_id=None,
            created_at=datetime.now(UTC),
            edited_at=None,
            deleted=False,
        )
    )
