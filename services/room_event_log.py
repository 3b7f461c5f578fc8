"""Positions and the log of room events: what the account stream replays from.

Every stored room event gets a position (``services.event_positions``): a message
in its own document (its room's writer takes the positions of a batch), any other
change (an edit, a reaction, a read marker, a membership change, an invitation) as
a ``RoomEventDoc`` written by ``record`` BEFORE the change is made, its position in
flight until the change is made. So a reader up to the watermark never meets a
logged change that is not made yet, and a change whose maker crashed half-way is
replayed as the store stands (each kind is rendered from the store, not from the
log).

The log is kept ``retention_seconds`` (``PLOP_SYNC_RETENTION_SECONDS``): ``clean``
deletes older entries, and tokens older than that are refused as expired.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from beanie import PydanticObjectId

from models import RoomEventDoc, RoomEventKind
from models.time import utc_now
from services.event_positions import EventPositions


class RoomEventLog:
    """Takes a position for a change and logs it; cleans up what is past retention."""

    def __init__(self, positions: EventPositions, retention_seconds: float) -> None:
        self.positions = positions
        self.retention_seconds = retention_seconds

    @asynccontextmanager
    async def record(
        self,
        kind: RoomEventKind,
        room_id: PydanticObjectId,
        *,
        user_ids: tuple[PydanticObjectId | None, ...] = (None,),
        message_id: PydanticObjectId | None = None,
        invitation_id: PydanticObjectId | None = None,
    ) -> AsyncIterator[int]:
        """Logs the change (one entry per user of ``user_ids``, consecutive positions)
        and yields the first position; make the change inside the block. The
        positions count as stored when the block ends, made or not."""
        first = await self.positions.take(len(user_ids))
        try:
            await RoomEventDoc.insert_many(
                [
                    RoomEventDoc(
                        pos=first + offset,
                        kind=kind,
                        room_id=room_id,
                        user_id=user_id,
                        message_id=message_id,
                        invitation_id=invitation_id,
                    )
                    for offset, user_id in enumerate(user_ids)
                ]
            )
            yield first
        finally:
            await self.positions.done(first)

    async def clean(self) -> int:
        """Deletes log entries past retention; how many."""
        cutoff = utc_now() - timedelta(seconds=self.retention_seconds)
        result = await RoomEventDoc.find(RoomEventDoc.at < cutoff).delete()
        return result.deleted_count if result is not None else 0
