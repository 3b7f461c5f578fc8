"""Rooms' progress (seq hint and message activity) moved forward, many rooms a write.

Every stored batch of a room moves its ``RoomProgressDoc`` forward (never the room's
own document, which holds its members). With many rooms sending at once, one update
command per room was the costliest step of their writers; now the moves made while a
write is in flight go out together as the next one, an unordered bulk write
(``services.batched_calls``), with a room's several moves in it merged into one
(``$max`` never moves either field back, so the highest of each is the same).

Each caller is answered once the write that carries its move has answered, as when
it wrote alone. Two first moves of a room on two instances may race on the upsert:
the one refused with a duplicate key is written again without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from beanie import PydanticObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from models import RoomProgressDoc
from services.batched_calls import BatchedCalls

# Rooms one bulk write moves at most (a bound on one command's size).
MAX_BATCH_ROOMS = 500
DUPLICATE_KEY = 11000


@dataclass(frozen=True, slots=True)
class _Move:
    room_id: PydanticObjectId
    seq: int
    when: datetime


class RoomProgressWrites:
    """Moves rooms' progress documents forward, together."""

    def __init__(self) -> None:
        self._calls = BatchedCalls(self._send, MAX_BATCH_ROOMS)

    async def moved(self, room_id: PydanticObjectId, seq: int, when: datetime) -> None:
        """The room's messages are stored up to ``seq``, the newest sent at ``when``."""
        await self._calls.call(_Move(room_id, seq, when))

    async def _send(self, batch: list[_Move]) -> list[Any]:
        highest: dict[PydanticObjectId, tuple[int, datetime]] = {}
        for move in batch:
            seq, when = highest.get(move.room_id, (move.seq, move.when))
            highest[move.room_id] = (max(seq, move.seq), max(when, move.when))
        moves = [
            ({"_id": room_id}, {"$max": {"seq_hint": seq, "last_activity_at": when}})
            for room_id, (seq, when) in highest.items()
        ]
        # The collection's own bulk write: Beanie's query builder and encoder cost more
        # than the write itself on this, the hottest update of all.
        progress = RoomProgressDoc.get_pymongo_collection()
        try:
            upserts = [UpdateOne(*move, upsert=True) for move in moves]
            await progress.bulk_write(upserts, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            # Two first moves raced: the document is there now.
            raced = [UpdateOne(*moves[error["index"]]) for error in errors]
            await progress.bulk_write(raced, ordered=False)
        return [None] * len(batch)
