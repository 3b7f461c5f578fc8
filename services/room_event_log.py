"""Positions and the log of room events: what the account stream replays from.

Every stored room event gets a position (``services.event_positions``): a message
in its own document (its room's writer takes the positions of a batch), any other
change (an edit or a delete, a reaction, a read marker, a membership change, an
invitation) as a ``RoomEventDoc`` that ``record`` writes BEFORE the change is made,
its position in flight until the change is made or failed. So a reader up to the
watermark never meets a logged change that is not made yet; a change that fails
takes its entry back; only a maker that crashed half-way leaves an entry for a
change it may not have made.

The log is kept ``retention_seconds`` (``PLOP_SYNC_RETENTION_SECONDS``): ``clean``
deletes older entries, and tokens older than that are refused as expired.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

from beanie import PydanticObjectId

from models import RoomEventDoc
from models.time import utc_now
from pubsub import Event, encode_event
from services.event_positions import EventPositions

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)


class NothingChanged(Exception):
    """Raised in a ``record`` block whose write turned out to change nothing (a
    concurrent change came first): the entry is taken back, and there is nothing to
    publish. Callers catch it around the block."""


class RoomEventLog:
    """Takes a position for a change and logs its event; cleans up past retention."""

    def __init__(self, positions: EventPositions, retention_seconds: float) -> None:
        self.positions = positions
        self.retention_seconds = retention_seconds

    @asynccontextmanager
    async def record(
        self,
        room_id: PydanticObjectId,
        build: Callable[[int], E],
        about: Iterable[PydanticObjectId] = (),
    ) -> AsyncIterator[E]:
        """The event ``build`` makes with its new position, logged; make the change
        inside the block, and publish the event (inside or after). ``about``: the
        users it concerns personally (see ``RoomEventDoc.user_ids``). If the block
        raises, the entry is taken back."""
        pos = await self.positions.take()
        try:
            event = build(pos)
            entry = RoomEventDoc(
                pos=pos,
                room_id=room_id,
                user_ids=list(about),
                event=json.loads(encode_event(event)),
            )
            await entry.insert()
            try:
                yield event
            except BaseException:
                await _take_back(entry)
                raise
        finally:
            await self.positions.done(pos)

    async def clean(self) -> int:
        """Deletes log entries past retention; how many."""
        cutoff = utc_now() - timedelta(seconds=self.retention_seconds)
        result = await RoomEventDoc.find(RoomEventDoc.at < cutoff).delete()
        return result.deleted_count if result is not None else 0


async def _take_back(entry: RoomEventDoc) -> None:
    try:
        await entry.delete()
    except Exception:  # the replay then shows a change that failed, as a crash would
        logger.warning("taking back a logged room event failed", exc_info=True)
