"""Rooms' seq hints and activity times, moved forward for many sends in one write.

Every stored message moves its room's ``seq_hint`` and ``last_activity_at`` forward
(``$max``: never back). Sends under load arrive faster than one update's round trip,
so the moves wait here while a write is in flight, are merged per room (the highest
seq and the latest time win, as ``$max`` would decide), and go out together in the
next unordered bulk write. A send still returns only after its room's move is
stored, so the room list orders it as before; it only shares the write.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from beanie import PydanticObjectId
from pymongo import UpdateOne

from models import RoomDoc


class RoomActivityWriter:
    """Writes rooms' seq and activity moves, batched while a write is in flight."""

    def __init__(self) -> None:
        self._pending: dict[PydanticObjectId, tuple[int, datetime]] = {}
        self._written: asyncio.Future[None] | None = None
        self._writing: asyncio.Task[None] | None = None

    async def stored_message(self, room_id: PydanticObjectId, seq: int, when: datetime) -> None:
        """Returns once the room's seq hint and activity time are at least these."""
        earlier = self._pending.get(room_id)
        if earlier is not None:
            seq, when = max(seq, earlier[0]), max(when, earlier[1])
        self._pending[room_id] = (seq, when)
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
        written = self._written
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write_all())
        await asyncio.shield(written)

    async def _write_all(self) -> None:
        """Writes batch after batch until none is pending (one write at a time)."""
        try:
            while self._pending:
                batch, self._pending = self._pending, {}
                written, self._written = self._written, None
                assert written is not None
                try:
                    await self._write(batch)
                except asyncio.CancelledError:
                    written.cancel()  # the process is stopping: its senders end too
                    raise
                except Exception as exc:
                    written.set_exception(exc)
                    written.exception()  # the senders are told; no "never retrieved"
                else:
                    written.set_result(None)
        finally:
            self._writing = None

    @staticmethod
    async def _write(batch: dict[PydanticObjectId, tuple[int, datetime]]) -> None:
        collection = RoomDoc.get_pymongo_collection()
        moves = {
            room_id: {"$max": {"seq_hint": seq, "last_activity_at": when}}
            for room_id, (seq, when) in batch.items()
        }
        if len(moves) == 1:
            ((room_id, move),) = moves.items()
            await collection.update_one({"_id": room_id}, move)
            return
        await collection.bulk_write(
            [UpdateOne({"_id": room_id}, move) for room_id, move in moves.items()], ordered=False
        )
