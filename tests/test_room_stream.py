"""The one ordered room stream (unit tests, no server): order, gaps, duplicates, and
membership re-read wherever it may have changed unseen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime

from beanie import PydanticObjectId

from live.hub import LAGGED, FanoutHub, Inbox, Lagged
from live.room_stream import Access, Membership, RoomStream, Step
from observability.metrics import ACTIVE_SUBSCRIPTIONS
from pubsub import (
    Event,
    FriendshipChanged,
    MembersChanged,
    MessageAdded,
    MessageData,
    MessageUpdated,
    PresenceChanged,
    ReadReceipt,
    TypingChanged,
)

ROOM = str(PydanticObjectId())
VIEWER = "viewer"
OTHER = "other"


def message(seq: int) -> MessageData:
    return MessageData(
        id=f"m{seq}",
        room_id=ROOM,
        seq=seq,
        sender_id=OTHER,
        sender_username="other",
        sender_display_name="Other",
        text=f"text {seq}",
        client_id=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        edited_at=None,
        deleted=False,
    )


class History:
    """The store as a room stream reads it."""

    def __init__(self) -> None:
        self.stored: dict[int, MessageData] = {}
        self.members = frozenset({VIEWER, OTHER})
        self.tag = "t1"
        self.membership_reads = 0

    def store(self, *seqs: int) -> None:
        for seq in seqs:
            self.stored[seq] = message(seq)

    async def latest_seq(self, room_id: str) -> int:
        return max(self.stored, default=0)

    async def stored_batch(
        self, room_id: str, after_seq: int, before_seq: int | None = None
    ) -> list[MessageData]:
        seqs = sorted(
            s for s in self.stored if s > after_seq and (before_seq is None or s < before_seq)
        )
        return [self.stored[s] for s in seqs[:3]]  # small batches: several reads per refill

    async def membership(self, room_id: str) -> Membership:
        self.membership_reads += 1
        return Membership(self.members, self.tag)


async def opened(
    stack: AsyncExitStack, hub: FanoutHub, history: History, after: int | None, recheck: float = 60
) -> AsyncIterator[Step]:
    stream = await RoomStream.open(stack, hub, history, ROOM, after, recheck)
    return stream.steps()


async def take(steps: AsyncIterator[Step], count: int) -> list[Step]:
    async with asyncio.timeout(5):
        return [await anext(steps) for _ in range(count)]


class Live:
    """Lets the stream run on until it waits for events, then takes its steps."""

    def __init__(self, steps: AsyncIterator[Step]) -> None:
        self._steps = steps
        self._next: asyncio.Future[Step] | None = None

    async def waiting(self) -> None:
        self._next = asyncio.ensure_future(anext(self._steps))
        await asyncio.sleep(0.05)  # nothing is stored or dispatched: it reaches the inbox
        assert not self._next.done(), "the stream had more to give before waiting"

    async def take(self, count: int) -> list[Step]:
        assert self._next is not None
        async with asyncio.timeout(5):
            first = await self._next
        self._next = None
        return [first, *await take(self._steps, count - 1)]


def seqs(steps: list[Step]) -> list[int | str]:
    return [step.seq if isinstance(step, MessageData) else "access" for step in steps]


def added(seq: int, tag: str | None = "t1") -> MessageAdded:
    return MessageAdded(message(seq), members_tag=tag)


async def test_replays_from_after_seq_then_goes_live_dropping_duplicates_and_filling_gaps() -> None:
    hub, history = FanoutHub(16), History()
    history.store(1, 2, 3, 4, 5)
    async with AsyncExitStack() as stack:
        steps = await opened(stack, hub, history, after=2)
        assert seqs(await take(steps, 4)) == ["access", 3, 4, 5]
        live = Live(steps)
        await live.waiting()
        history.store(6, 7, 8)
        for seq in (5, 6, 6, 8):  # a duplicate, a repeat, and 7 missing from the events
            hub.dispatch(added(seq))
        assert seqs(await live.take(4)) == [6, "access", 7, 8]


async def test_a_removal_behind_a_burst_that_overflowed_the_inbox_is_not_lost() -> None:
    hub, history = FanoutHub(inbox_capacity=4), History()
    async with AsyncExitStack() as stack:
        steps = await opened(stack, hub, history, after=None)
        assert seqs(await take(steps, 1)) == ["access"]
        live = Live(steps)
        await live.waiting()
        history.store(*range(1, 301))
        # What one fetch from the broker hands over: 300 messages, then the leave.
        for seq in range(1, 301):
            hub.dispatch(added(seq))
        hub.dispatch(MembersChanged(room_id=ROOM, added=(), removed=(VIEWER,)))
        first = await live.take(1)
        assert isinstance(first[0], Access) and not first[0].allows(VIEWER)
        assert first[0].allows(OTHER)


async def test_every_refill_after_a_lag_reads_membership_first() -> None:
    hub, history = FanoutHub(inbox_capacity=2), History()
    async with AsyncExitStack() as stack:
        steps = await opened(stack, hub, history, after=None)
        await take(steps, 1)
        live = Live(steps)
        await live.waiting()
        history.store(*range(1, 11))
        history.members = frozenset({OTHER})  # the viewer left; its event was lost
        for seq in range(1, 11):
            hub.dispatch(added(seq))
        got = await live.take(3)
        # Two queued events, then the lag: membership is read before any refill.
        assert seqs(got) == [1, 2, "access"]
        access = got[2]
        assert isinstance(access, Access) and not access.allows(VIEWER)


async def test_a_message_authorized_against_another_membership_rereads_it_first() -> None:
    hub, history = FanoutHub(16), History()
    async with AsyncExitStack() as stack:
        steps = await opened(stack, hub, history, after=None)
        await take(steps, 1)
        live = Live(steps)
        await live.waiting()
        history.store(1)
        hub.dispatch(added(1, tag="t1"))
        assert seqs(await live.take(1)) == [1]
        await live.waiting()
        reads = history.membership_reads
        history.store(2)
        history.members, history.tag = frozenset({OTHER}), "t2"
        hub.dispatch(added(2, tag="t2"))
        got = await live.take(2)
        assert seqs(got) == ["access", 2]
        assert isinstance(got[0], Access) and not got[0].allows(VIEWER)
        assert history.membership_reads == reads + 1


async def test_membership_is_reread_on_the_timer_without_any_event() -> None:
    hub, history = FanoutHub(16), History()
    async with AsyncExitStack() as stack:
        steps = await opened(stack, hub, history, after=None, recheck=0.05)
        await take(steps, 1)
        history.members = frozenset({OTHER})
        got = await take(steps, 1)
        assert isinstance(got[0], Access) and not got[0].allows(VIEWER)


async def test_control_events_are_read_first_and_kept_when_data_overflows() -> None:
    inbox = Inbox(capacity=2)
    for seq in range(1, 6):
        inbox.offer(added(seq))
    removal = MembersChanged(room_id=ROOM, added=(), removed=(VIEWER,))
    inbox.offer(removal)
    async with asyncio.timeout(1):
        got = [await inbox.get() for _ in range(4)]
    assert got[0] is removal
    assert [event.message.seq for event in got[1:3] if isinstance(event, MessageAdded)] == [1, 2]
    assert got[3] is LAGGED


async def test_a_subscription_whose_rendering_swallowed_its_stop_ends_at_its_next_wait() -> None:
    """A GraphQL rendering that awaits the store may turn the one cancel of a stopped
    subscription into a field error and return; the subscription must still end (and
    stop counting as active) instead of waiting for its next event until its socket
    closes."""
    hub = FanoutHub(inbox_capacity=8)
    route = added(1).route

    watching = asyncio.Event()

    async def updates() -> AsyncIterator[Event | Lagged]:
        with hub.watching(route) as inbox:
            watching.set()
            while True:
                yield await inbox.get()

    rendering = asyncio.Event()

    async def subscription() -> None:
        async for _ in updates():
            rendering.set()
            # A field that awaits the store; a field error is what becomes of the cancel.
            with suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

    active = ACTIVE_SUBSCRIPTIONS._value.get()
    task = asyncio.create_task(subscription())
    async with asyncio.timeout(1):
        await watching.wait()
        assert ACTIVE_SUBSCRIPTIONS._value.get() == active + 1
        hub.dispatch(added(1))
        await rendering.wait()
    task.cancel()
    async with asyncio.timeout(1):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert ACTIVE_SUBSCRIPTIONS._value.get() == active


async def test_presence_of_an_ex_friend_stops_even_when_the_stream_lagged() -> None:
    """Friendship events are control events: a flood of presence changes cannot push
    out the removal, and a lag re-reads the friends from the store."""
    import fakeredis

    from services.presence import PresenceService

    viewer, friend, ex_friend = PydanticObjectId(), PydanticObjectId(), PydanticObjectId()

    class Friends:
        ids = [friend, ex_friend]

        async def friend_ids(self, user_id: PydanticObjectId) -> list[PydanticObjectId]:
            return list(self.ids)

    class Publisher:
        async def publish(self, event: object) -> bool:
            return True

    class Viewer:
        id = viewer

    hub = FanoutHub(inbox_capacity=2)
    friends = Friends()
    presence = PresenceService(
        fakeredis.FakeAsyncRedis(),
        Publisher(),  # type: ignore[arg-type]
        hub,
        friends,  # type: ignore[arg-type]
        ttl_seconds=30,
        heartbeat_seconds=10,
        grace_seconds=3,
        sweep_seconds=2,
    )
    stream = presence.friends_presence(Viewer())  # type: ignore[arg-type]
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)  # the stream watches its friends now
    hub.dispatch(PresenceChanged(str(friend), "ONLINE", None))
    async with asyncio.timeout(1):
        assert (await first).user_id == str(friend)
    for _ in range(10):  # overflows the data queue
        hub.dispatch(PresenceChanged(str(ex_friend), "ONLINE", None))
    friends.ids = [friend]
    hub.dispatch(FriendshipChanged(str(viewer), str(ex_friend), added=False))
    hub.dispatch(PresenceChanged(str(ex_friend), "OFFLINE", None))
    hub.dispatch(PresenceChanged(str(friend), "OFFLINE", None))
    seen: list[str] = []
    async with asyncio.timeout(2):
        while True:
            change = await anext(stream)
            seen.append(change.user_id)
            if change.user_id == str(friend) and change.status == "OFFLINE":
                break
    assert str(ex_friend) not in seen
    await stream.aclose()


async def test_activity_alone_comes_in_order_and_reads_no_stored_message() -> None:
    hub, history = FanoutHub(16), History()
    history.store(1, 2)
    async with AsyncExitStack() as stack:
        stream = await RoomStream.open(stack, hub, history, ROOM, None, 60, messages=False)
        steps = stream.steps()
        assert seqs(await take(steps, 1)) == ["access"]
        live = Live(steps)
        await live.waiting()
        edited = MessageUpdated(message(1), members_tag="t1")
        typing = TypingChanged(ROOM, OTHER, "other", "Other", True, members_tag="t1")
        receipt = ReadReceipt(ROOM, OTHER, "other", "Other", 2, members_tag="t1")
        for event in (added(3), edited, typing, receipt):
            hub.dispatch(event)
        assert await live.take(3) == [edited, typing, receipt]
        # Authorized against a membership this stream has not seen: re-read it first.
        history.tag = "t2"
        stranger = MessageUpdated(message(2), members_tag="t2")
        hub.dispatch(stranger)
        got = await take(steps, 2)
        assert isinstance(got[0], Access) and got[1] == stranger
        left = MembersChanged(room_id=ROOM, added=(), removed=(VIEWER,))
        hub.dispatch(left)
        got = await take(steps, 2)
        assert isinstance(got[0], Access) and not got[0].allows(VIEWER) and got[1] == left


async def test_the_access_after_a_lag_says_so() -> None:
    hub, history = FanoutHub(inbox_capacity=2), History()
    async with AsyncExitStack() as stack:
        steps = await opened(stack, hub, history, after=None)
        first = await take(steps, 1)
        assert isinstance(first[0], Access) and not first[0].lagged
        live = Live(steps)
        await live.waiting()
        history.store(*range(1, 6))
        for seq in range(1, 6):
            hub.dispatch(added(seq))
        got = await live.take(3)
        assert seqs(got) == [1, 2, "access"]
        assert isinstance(got[2], Access) and got[2].lagged
