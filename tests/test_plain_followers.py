"""A room feed's one loop over its plain followers (unit tests, no server).

The feed hands each message to the followers at its position in one loop, with no
check of position, access or end per follower: these tests drive a real feed (its
real ``RoomStream`` on a real ``FanoutHub``) with a store that keeps every message
before it is published, as the send path does, and check what each follower's
sink got: every message once, in order, nothing after its removal or its end, and
nothing live before a follower behind the feed has caught up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

import pytest
from beanie import PydanticObjectId

from errors import Forbidden
from live.hub import FanoutHub
from live.plain_followers import PlainFollowers
from live.room_feeds import CATCH_UP_PAGE, FeedSource, Render, RoomFeeds
from live.room_stream import Membership, RoomActivity
from pubsub import MembersChanged, MessageAdded, MessageData

ROOM = str(PydanticObjectId())
SENDER = "sender"
WAIT_SECONDS = 10


def message(seq: int) -> MessageData:
    return MessageData(
        id=f"m{seq}",
        room_id=ROOM,
        seq=seq,
        sender_id=SENDER,
        sender_username="sender",
        sender_display_name="Sender",
        text=f"text {seq}",
        client_id=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        edited_at=None,
        deleted=False,
    )


class Store:
    """The store as a feed reads it: messages kept before they are published."""

    def __init__(self, members: set[str]) -> None:
        self.stored: dict[int, MessageData] = {}
        self.members = set(members) | {SENDER}
        self.reads = 0
        self.read_started = asyncio.Event()
        # Cleared: reads of stored messages wait until it is set again.
        self.reads_open = asyncio.Event()
        self.reads_open.set()

    async def latest_seq(self, room_id: str) -> int:
        return max(self.stored, default=0)

    async def stored_batch(
        self, room_id: str, after_seq: int, before_seq: int | None = None
    ) -> list[MessageData]:
        self.reads += 1
        self.read_started.set()
        await self.reads_open.wait()
        end = before_seq if before_seq is not None else max(self.stored, default=0) + 1
        seqs = [seq for seq in sorted(self.stored) if after_seq < seq < end]
        return [self.stored[seq] for seq in seqs[:CATCH_UP_PAGE]]

    async def membership(self, room_id: str) -> Membership:
        return Membership(frozenset(self.members), "tag")

    async def hidden_from(self, event: RoomActivity, viewer_ids: object) -> set[str]:
        return set()


class Sink:
    """One subscription's socket: the seqs it was handed, in order."""

    def __init__(self, refuse_after: int | None = None) -> None:
        self.seqs: list[int] = []
        self.refuse_after = refuse_after
        self._changed = asyncio.Event()

    def deliver(self, payload: str) -> bool:
        if self.refuse_after is not None and len(self.seqs) >= self.refuse_after:
            return False
        self.seqs.append(int(payload.strip("<>")))
        self._changed.set()
        return True

    async def until(self, done: Callable[[list[int]], bool]) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            while not done(self.seqs):
                self._changed.clear()
                await self._changed.wait()

    async def has(self, seq: int) -> None:
        await self.until(lambda seqs: seq in seqs)


class Room:
    """A feed of one room and the way messages reach it, as the send path does."""

    def __init__(self, members: set[str]) -> None:
        self.hub = FanoutHub(inbox_capacity=10_000)
        self.store = Store(members)
        self.feeds = RoomFeeds(FeedSource(self.hub, self.store, recheck_seconds=60))
        self.renderings = 0
        self.sent = 0

    def make_render(self) -> Render:
        async def render(data: MessageData) -> str:
            self.renderings += 1
            return f"<{data.seq}>"

        return render

    def send(self, count: int = 1) -> None:
        for _ in range(count):
            self.sent += 1
            self.store.stored[self.sent] = message(self.sent)
            self.hub.dispatch(MessageAdded(message(self.sent)))

    def redeliver(self, seq: int) -> None:
        """A broker's redelivery of a message published before."""
        self.hub.dispatch(MessageAdded(message(seq)))

    @asynccontextmanager
    async def following(
        self, viewer: str, after_seq: int | None, sink: Sink
    ) -> AsyncIterator[asyncio.Task[None]]:
        task = asyncio.create_task(
            self.feeds.follow(ROOM, viewer, after_seq, "shared", self.make_render, sink)
        )
        try:
            yield task
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError, Forbidden):
                await task


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    made = Room({"ann", "bob", "cid"})
    yield made
    await made.feeds.close()


def in_order_once(upto: int, start: int = 1) -> list[int]:
    return list(range(start, upto + 1))


async def test_live_followers_get_every_message_once_in_order(room: Room) -> None:
    sinks = {viewer: Sink() for viewer in ("ann", "bob", "cid")}
    async with (
        room.following("ann", 0, sinks["ann"]),
        room.following("bob", 0, sinks["bob"]),
        room.following("cid", 0, sinks["cid"]),
    ):
        room.send()
        for sink in sinks.values():
            await sink.has(1)
        reads = room.store.reads
        room.send(40)
        room.redeliver(7)  # at or below every follower's position: dropped
        room.send(10)
        for sink in sinks.values():
            await sink.has(51)
        assert all(sink.seqs == in_order_once(51) for sink in sinks.values())
        # Live followers read nothing from the store, and each message rendered once.
        assert room.store.reads == reads
        assert room.renderings == 51


async def test_a_removed_member_gets_nothing_after_the_removal(room: Room) -> None:
    ann, bob = Sink(), Sink()
    async with room.following("ann", 0, ann), room.following("bob", 0, bob) as bob_task:
        room.send(5)
        await ann.has(5)
        await bob.has(5)
        room.store.members.discard("bob")
        room.hub.dispatch(MembersChanged(ROOM, added=(), removed=("bob",)))
        room.send(5)
        await ann.has(10)
        with pytest.raises(Forbidden):
            await bob_task
        assert ann.seqs == in_order_once(10)
        assert bob.seqs == in_order_once(5)


async def test_a_follower_behind_catches_up_before_it_gets_live_messages(room: Room) -> None:
    ann, bob = Sink(), Sink()
    async with room.following("ann", 0, ann):
        room.send(5)
        await ann.has(5)
        # Bob resumes from 2 while the store is slow: messages go live meanwhile.
        room.store.reads_open.clear()
        room.store.read_started.clear()
        async with room.following("bob", 2, bob):
            async with asyncio.timeout(WAIT_SECONDS):
                await room.store.read_started.wait()  # bob's catch-up read has begun
            room.send(3)
            await ann.has(8)
            assert bob.seqs == []  # nothing live ahead of what it missed
            room.store.reads_open.set()
            await bob.has(8)
            room.send(2)
            await bob.has(10)
            assert bob.seqs == in_order_once(10, start=3)
            assert ann.seqs == in_order_once(10)


async def test_a_follower_ahead_of_the_feed_gets_only_what_is_past_its_position(
    room: Room,
) -> None:
    ann, bob = Sink(), Sink()
    async with room.following("ann", 0, ann):
        room.send(2)
        await ann.has(2)
        # Bob read up to 5 elsewhere (stored, not yet consumed here): it starts there.
        async with room.following("bob", 5, bob):
            room.send(6)
            await ann.has(8)
            await bob.has(8)
            assert bob.seqs == in_order_once(8, start=6)
            assert ann.seqs == in_order_once(8)


async def test_a_socket_that_takes_no_more_ends_only_its_own_follower(room: Room) -> None:
    ann, full = Sink(), Sink(refuse_after=3)
    async with room.following("ann", 0, ann), room.following("bob", 0, full) as full_task:
        room.send(6)
        await ann.has(6)
        async with asyncio.timeout(WAIT_SECONDS):
            await full_task  # ends quietly: its client resumes with afterSeq
        room.send(2)
        await ann.has(8)
        assert full.seqs == in_order_once(3)
        assert ann.seqs == in_order_once(8)


async def test_a_follower_that_leaves_gets_nothing_more_and_others_go_on(room: Room) -> None:
    ann, bob = Sink(), Sink()
    async with room.following("ann", 0, ann):
        async with room.following("bob", 0, bob):
            room.send(3)
            await bob.has(3)
        room.send(3)
        await ann.has(6)
        assert bob.seqs == in_order_once(3)
        assert ann.seqs == in_order_once(6)


def test_the_loop_hands_the_payload_to_each_and_names_the_refusals() -> None:
    given: list[tuple[str, str]] = []

    def sink(name: str, takes: bool) -> Callable[[str], bool]:
        def deliver(payload: str) -> bool:
            given.append((name, payload))
            return takes

        return deliver

    plain: PlainFollowers[str] = PlainFollowers()
    plain.add("a", sink("a", True))
    plain.add("b", sink("b", False))
    plain.add("c", sink("c", True))
    plain.discard("c")
    assert plain.hand_out("p") == ["b"]
    assert given == [("a", "p"), ("b", "p")]
    assert len(plain) == 2 and "c" not in plain
