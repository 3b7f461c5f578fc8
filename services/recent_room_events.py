"""Stored room events by position, read once per instance for every account stream.

Account streams catch up often (at the start, after a lag, and whenever 24 live
events sit above their cursor), and at about the same moments over about the same
positions. Each catch-up asks for the events of its viewer's rooms in a span of
positions; read from the store one stream at a time, that is one pair of queries per
stream per catch-up. Here a span is read in chunks of ``CHUNK`` positions, each
chunk once for every stream, and each stream keeps what concerns it.

Why a chunk read once can be kept: nothing is ever stored at a position at or below
a watermark already read (``services.event_positions``), so a chunk that ends at or
below the watermark it was read under never changes. The tail chunk, which the
watermark cuts, is read up to the watermark; a later, higher watermark reads only
the positions above what it holds.
Only the text of a message edited after its chunk was read is older there than in
the store; its edit, logged at a later position, follows in the same replay.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pubsub import InvitationReceived, MembersChanged, MessageData, RoomAdded
from pubsub.events import MessageUpdated, ReactionChanged, ReadReceipt

# Positions per chunk: a chunk is one pair of queries.
CHUNK = 256
# Chunks kept: the recent ones, where catching-up streams meet.
KEPT_CHUNKS = 32

StoredItem = (
    MessageData
    | MessageUpdated
    | ReactionChanged
    | ReadReceipt
    | MembersChanged
    | RoomAdded
    | InvitationReceived
)


@dataclass(frozen=True, slots=True)
class RoomEventEntry:
    """One stored event at its position, with whom it concerns."""

    pos: int
    room_id: str
    # Users the event is about personally (put in a room, taken out, invited): theirs
    # even when they are not in the room.
    user_ids: frozenset[str]
    item: StoredItem

    def concerns(self, viewer_id: str, rooms: set[str]) -> bool:
        return self.room_id in rooms or viewer_id in self.user_ids


# Reads the stored events with after < pos <= upto, in position order.
ReadSpan = Callable[[int, int], Awaitable[list[RoomEventEntry]]]


class _Chunk:
    """The positions of one chunk read so far: complete from its start up to ``read_to``."""

    __slots__ = ("entries", "lock", "read_to")

    def __init__(self, start: int) -> None:
        self.read_to = start
        self.entries: list[RoomEventEntry] = []  # ascending positions, appended only
        self.lock = asyncio.Lock()


class RecentRoomEvents:
    """The stored events of recent positions, read in shared chunks."""

    def __init__(self, read_span: ReadSpan, kept: int = KEPT_CHUNKS) -> None:
        self._read_span = read_span
        self._kept = kept
        self._chunks: OrderedDict[int, _Chunk] = OrderedDict()
        self.reads = 0  # reads of the store made (what sharing saves shows here)

    async def between(
        self, viewer_id: str, rooms: set[str], after: int, upto: int, limit: int
    ) -> tuple[list[RoomEventEntry], int]:
        """The stored events that concern the viewer (of ``rooms``, or about them
        personally) with after < pos <= upto (``upto`` at most a watermark read),
        whole chunks at a time until about ``limit`` of them, and the position up to
        which that list is complete."""
        found: list[RoomEventEntry] = []
        reached = after
        while reached < upto and len(found) < limit:
            number = reached // CHUNK
            end = min((number + 1) * CHUNK, upto)
            entries = await self._read_to(number, end)
            found.extend(
                entry
                for entry in entries
                if reached < entry.pos <= end and entry.concerns(viewer_id, rooms)
            )
            reached = end
        return found, reached

    async def _read_to(self, number: int, end: int) -> list[RoomEventEntry]:
        """The chunk's entries, read at least up to ``end``."""
        chunk = self._chunks.get(number)
        if chunk is None:
            chunk = self._chunks[number] = _Chunk(number * CHUNK)
            while len(self._chunks) > self._kept:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(number)
        async with chunk.lock:
            if chunk.read_to < end:
                # What a chunk holds was complete under the watermark it was read at,
                # so a later read only adds the positions above it.
                more = await self._read_span(chunk.read_to, end)
                self.reads += 1
                chunk.entries.extend(more)
                chunk.read_to = end
        return chunk.entries
