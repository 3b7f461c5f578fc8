"""RecentRoomEvents (unit tests, no server): account streams catching up over the same
positions share each chunk's read, and each keeps only what concerns its viewer."""

from __future__ import annotations

import asyncio

import pytest

from devtools.sample_events import room_message
from pubsub import RoomAdded
from services.recent_room_events import CHUNK, RecentRoomEvents, RoomEventEntry


def message(pos: int, room: str) -> RoomEventEntry:
    return RoomEventEntry(pos, room, frozenset(), room_message(room, pos).message)


class Store:
    """Every position holds an event: odd ones of room "a", even ones of room "b";
    every hundredth puts "v" in room "c". Records each span read."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False

    async def read_span(self, after: int, upto: int) -> list[RoomEventEntry]:
        self.spans.append((after, upto))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the store went away")
        entries = []
        for pos in range(after + 1, upto + 1):
            if pos % 100 == 0:
                joined = RoomAdded(user_id="v", room_id="c", pos=pos)
                entries.append(RoomEventEntry(pos, "c", frozenset({"v"}), joined))
            else:
                entries.append(message(pos, "a" if pos % 2 else "b"))
        return entries


async def test_streams_catching_up_together_share_each_chunk_read() -> None:
    store = Store()
    store.release.clear()
    recent = RecentRoomEvents(store.read_span)
    upto = 2 * CHUNK + 10
    both = asyncio.gather(
        recent.between("v", {"a"}, 0, upto, limit=10_000),
        recent.between("w", {"b"}, 0, upto, limit=10_000),
    )
    await asyncio.sleep(0)
    store.release.set()
    (of_v, reached_v), (of_w, reached_w) = await both
    assert store.spans == [(0, CHUNK), (CHUNK, 2 * CHUNK), (2 * CHUNK, upto)]
    assert reached_v == reached_w == upto
    assert [e.pos for e in of_v] == [p for p in range(1, upto + 1) if p % 2 or p % 100 == 0]
    assert [e.pos for e in of_w] == [p for p in range(1, upto + 1) if not p % 2 and p % 100]


async def test_a_higher_watermark_reads_only_what_the_tail_chunk_lacks() -> None:
    store = Store()
    recent = RecentRoomEvents(store.read_span)
    first, _ = await recent.between("v", {"a", "b"}, 0, 40, limit=10_000)
    later, reached = await recent.between("v", {"a", "b"}, 30, 90, limit=10_000)
    assert store.spans == [(0, 40), (40, 90)]
    assert [e.pos for e in first] == list(range(1, 41))
    assert [e.pos for e in later] == list(range(31, 91)) and reached == 90


async def test_a_replay_stops_at_a_chunk_end_once_it_has_about_the_limit() -> None:
    store = Store()
    recent = RecentRoomEvents(store.read_span)
    found, reached = await recent.between("v", {"a", "b"}, 0, 5 * CHUNK, limit=CHUNK + 1)
    assert reached == 2 * CHUNK
    assert [e.pos for e in found] == list(range(1, 2 * CHUNK + 1))


async def test_a_failed_read_is_read_again_by_the_next_stream() -> None:
    store = Store()
    recent = RecentRoomEvents(store.read_span)
    store.fail_next = True
    with pytest.raises(ConnectionError):
        await recent.between("v", {"a"}, 0, 50, limit=10_000)
    found, reached = await recent.between("v", {"a"}, 0, 50, limit=10_000)
    assert reached == 50 and [e.pos for e in found] == list(range(1, 51, 2))
    assert store.spans == [(0, 50), (0, 50)]


async def test_only_recent_chunks_are_kept() -> None:
    store = Store()
    recent = RecentRoomEvents(store.read_span, kept=2)
    for number in range(3):
        await recent.between("v", {"a"}, number * CHUNK, (number + 1) * CHUNK, limit=10_000)
    await recent.between("v", {"a"}, 0, CHUNK, limit=10_000)  # forgotten: read again
    assert store.spans[-1] == (0, CHUNK) and len(store.spans) == 4
