"""A room's writer (unit tests, no server): concurrent sends take gap-free seqs
together, a retried key gets its first message once, a seq range lost to another
instance is retried from where the room stands, writers of one room on two instances
take turns, and a full queue is RATE_LIMITED."""

from __future__ import annotations

import asyncio

import pytest
from beanie import PydanticObjectId

from backends.redis import open_redis
from errors import RateLimited
from models import MessageDoc
from services.message_store import new_message
from services.room_turns import CLAIM_MS, RedisRoomTurns
from services.room_writer import Outcome, RoomWriters, Stored

ROOM = PydanticObjectId()
SENDER = PydanticObjectId()


def message(key: str, room: PydanticObjectId = ROOM) -> MessageDoc:
    return new_message(room, 0, SENDER, f"text {key}", key, f"{SENDER}:{key}")


class Store:
    """The database as a room writer sees it, with another instance beside it."""

    def __init__(self) -> None:
        self.by_seq: dict[tuple[PydanticObjectId, int], MessageDoc] = {}
        self.by_key: dict[str, MessageDoc] = {}
        self.inserts: list[int] = []  # the size of each ordered insert
        self.moved_to: dict[PydanticObjectId, int] = {}
        # Held before the next insert, so that sends pile up behind it.
        self.gate: asyncio.Event | None = None
        # Seqs another instance takes just before the next insert reaches them.
        self.foreign_at: list[int] = []
        self.fail_next: Exception | None = None
        self.refused = 0  # inserts refused for a seq another instance took
        # Held in the next lookup of the room's newest seq; set once one began.
        self.newest_gate: asyncio.Event | None = None
        self.looking_up = asyncio.Event()
        self.lookups = 0  # lookups of a room's newest seq
        # Where the other instance records the room's next seq after it stored.
        self.foreign_turns: SharedTurns | None = None

    def put(self, stored: MessageDoc) -> None:
        self.by_seq[(stored.room_id, stored.seq)] = stored
        self.by_key[stored.idempotency_key] = stored

    def seqs(self, room: PydanticObjectId = ROOM) -> list[int]:
        return sorted(seq for room_id, seq in self.by_seq if room_id == room)

    async def insert_ordered(self, messages: list[MessageDoc]) -> int | None:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.inserts.append(len(messages))
        for index, candidate in enumerate(messages):
            if candidate.seq in self.foreign_at:  # the other instance got there first
                self.foreign_at.remove(candidate.seq)
                foreign = message(f"foreign-{candidate.seq}")
                foreign.seq = candidate.seq
                self.put(foreign)
                if self.foreign_turns is not None:
                    self.foreign_turns.next[candidate.room_id] = candidate.seq + 1
            seq_key = (candidate.room_id, candidate.seq)
            if seq_key in self.by_seq or candidate.idempotency_key in self.by_key:
                self.refused += seq_key in self.by_seq
                return index
            assert candidate.seq == 1 or (candidate.room_id, candidate.seq - 1) in self.by_seq
            self.put(candidate.model_copy())
        return None

    async def stored_under(self, idempotency_key: str) -> MessageDoc | None:
        return self.by_key.get(idempotency_key)

    async def newest_seq(self, room_id: PydanticObjectId, taken: int) -> int:
        assert (room_id, taken) in self.by_seq
        self.lookups += 1
        self.looking_up.set()
        if self.newest_gate is not None:
            gate, self.newest_gate = self.newest_gate, None
            await gate.wait()
        return max(self.seqs(room_id))

    async def stored_up_to(self, newest: MessageDoc) -> None:
        self.moved_to[newest.room_id] = max(self.moved_to.get(newest.room_id, 0), newest.seq)


class SharedTurns:
    """Turns as Redis keeps them for every instance (services.room_turns)."""

    def __init__(self) -> None:
        self.next: dict[PydanticObjectId, int] = {}
        self.claimant: dict[PydanticObjectId, str] = {}
        self.freed = asyncio.Event()


class Turns:
    """One instance's view of the shared turns (``RoomTurns``)."""

    def __init__(self, shared: SharedTurns | None = None, name: str = "a") -> None:
        self.shared = shared or SharedTurns()
        self.name = name
        self.waited = 0  # how often this instance waited for another's turn
        self.held_back = asyncio.Event()

    async def turn(self, room_id: PydanticObjectId) -> int | None:
        if self.shared.claimant.get(room_id, self.name) != self.name:
            return None
        return self.shared.next.get(room_id, 0)

    async def wait_turn(self, room_id: PydanticObjectId) -> int:
        while self.shared.claimant.get(room_id, self.name) != self.name:
            self.waited += 1
            self.held_back.set()
            self.shared.freed.clear()
            await self.shared.freed.wait()
        return self.shared.next.get(room_id, 0)

    async def claim(self, room_id: PydanticObjectId) -> None:
        self.shared.claimant[room_id] = self.name

    async def stored(self, room_id: PydanticObjectId, next_seq: int) -> None:
        self.shared.next[room_id] = max(self.shared.next.get(room_id, 0), next_seq)
        if self.shared.claimant.get(room_id) == self.name:
            del self.shared.claimant[room_id]
            self.shared.freed.set()


class Positions:
    """Event positions (``PositionTaker``): a counter, and what is still in flight."""

    def __init__(self) -> None:
        self.last = 0
        self.in_flight: set[int] = set()

    async def take(self, count: int = 1) -> int:
        first = self.last + 1
        self.last += count
        self.in_flight.add(first)
        return first

    async def done(self, first: int) -> None:
        self.in_flight.remove(first)


def writers_of(
    store: Store, queue_limit: int = 100, positions: Positions | None = None
) -> RoomWriters:
    return RoomWriters(store, Turns(), queue_limit=queue_limit, positions=positions or Positions())


async def send_all(writers: RoomWriters, messages: list[MessageDoc], hint: int = 0) -> list[Stored]:
    return list(await asyncio.gather(*(writers.store(m, hint) for m in messages)))


async def test_concurrent_sends_take_every_seq_once_in_few_inserts() -> None:
    store = Store()
    writers = writers_of(store, queue_limit=1_000)
    stored = await send_all(writers, [message(f"k{n}") for n in range(300)])
    assert sorted(s.message.seq for s in stored) == list(range(1, 301))
    assert {s.outcome for s in stored} == {Outcome.STORED}
    assert store.seqs() == list(range(1, 301))
    assert len(store.inserts) <= 4  # batches, not one insert per send
    assert store.moved_to[ROOM] == 300
    assert writers.queued(ROOM) == 0  # the writer is gone once idle


async def test_stored_messages_have_positions_in_seq_order_none_left_in_flight() -> None:
    store = Store()
    positions = Positions()
    writers = writers_of(store, queue_limit=1_000, positions=positions)
    stored = await send_all(writers, [message(f"k{n}") for n in range(200)])
    by_seq = sorted((s.message.seq, s.message.pos or 0) for s in stored)
    given = [pos for _, pos in by_seq]
    assert 0 not in given and given == sorted(given) and len(set(given)) == 200
    assert positions.in_flight == set()


async def test_sends_keep_their_arrival_order_within_a_batch() -> None:
    store = Store()
    writers = writers_of(store)
    stored = await send_all(writers, [message(f"k{n}") for n in range(20)])
    assert [s.message.client_id for s in stored] == [f"k{n}" for n in range(20)]
    assert [s.message.seq for s in stored] == list(range(1, 21))


async def test_same_key_sent_twice_while_queued_gets_the_one_message() -> None:
    store = Store()
    writers = writers_of(store)
    gate = store.gate = asyncio.Event()
    blocker = asyncio.create_task(writers.store(message("first-in-flight"), 0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    first = asyncio.create_task(writers.store(message("retried"), 0))
    other = asyncio.create_task(writers.store(message("other"), 0))
    retry = asyncio.create_task(writers.store(message("retried"), 0))
    await asyncio.sleep(0)
    assert writers.queued(ROOM) == 3  # the in-flight one, "retried" once, "other"
    gate.set()
    results = await asyncio.gather(blocker, first, other, retry)
    assert results[1].message.id == results[3].message.id
    assert (results[1].outcome, results[3].outcome) == (Outcome.STORED, Outcome.SHARED)
    assert store.seqs() == [1, 2, 3]
    assert sum(1 for m in store.by_seq.values() if m.client_id == "retried") == 1


async def test_retry_of_a_stored_send_returns_it_and_its_seq_goes_to_the_next() -> None:
    store = Store()
    writers = writers_of(store)
    (earlier,) = await send_all(writers, [message("once")])
    stored = await send_all(writers, [message("a"), message("once"), message("b")], hint=1)
    assert stored[1].outcome is Outcome.EARLIER
    assert stored[1].message.id == earlier.message.id
    assert [stored[0].message.seq, stored[2].message.seq] == [2, 3]
    assert store.seqs() == [1, 2, 3]


async def test_batch_that_loses_its_seq_range_to_another_instance_stores_all_without_gap() -> None:
    store = Store()
    writers = writers_of(store)
    await send_all(writers, [message("k0")])
    # The next batch is given seqs 2..11; the other instance stores at 4, then at 5,
    # each just before this batch reaches it.
    store.foreign_at = [4, 5]
    stored = await send_all(writers, [message(f"b{n}") for n in range(10)], hint=1)
    assert [s.message.seq for s in stored] == [2, 3, *range(6, 14)]
    assert store.seqs() == list(range(1, 14))
    assert store.inserts[1:] == [10, 8, 8]  # the batch, then twice what was left
    ours = [m for m in store.by_seq.values() if m.client_id and m.client_id.startswith("b")]
    assert len(ours) == 10
    assert store.foreign_at == []


async def test_stale_hint_of_a_new_writer_costs_a_retry_not_a_gap() -> None:
    store = Store()
    writers = writers_of(store)
    await send_all(writers, [message(f"k{n}") for n in range(5)])
    stored = await send_all(writers, [message("late")], hint=2)
    assert stored[0].message.seq == 6
    assert store.seqs() == list(range(1, 7))


async def test_full_room_queue_answers_rate_limited_with_retry_after() -> None:
    store = Store()
    writers = writers_of(store, queue_limit=3)
    gate = store.gate = asyncio.Event()
    queued = [asyncio.create_task(writers.store(message(f"k{n}"), 0)) for n in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as refused:
        await writers.store(message("one too many"), 0)
    assert refused.value.extensions == {"retryAfter": pytest.approx(1.0)}
    other_room = PydanticObjectId()
    elsewhere = asyncio.create_task(writers.store(message("elsewhere", other_room), 0))
    gate.set()
    assert sorted(s.message.seq for s in await asyncio.gather(*queued)) == [1, 2, 3]
    assert (await elsewhere).message.seq == 1  # the bound is per room
    assert (await writers.store(message("after"), 3)).message.seq == 4


async def test_store_failure_fails_the_batch_and_the_next_send_goes_on() -> None:
    store = Store()
    writers = writers_of(store)
    store.fail_next = ConnectionError("store down")
    results = await asyncio.gather(
        *(writers.store(message(f"k{n}"), 0) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ConnectionError) for result in results)
    assert store.seqs() == []
    assert (await writers.store(message("k0"), 0)).message.seq == 1


async def test_a_writer_on_another_instance_starts_where_the_room_stands() -> None:
    store = Store()
    shared = SharedTurns()
    here = RoomWriters(store, Turns(shared, "a"), queue_limit=100, positions=Positions())
    there = RoomWriters(store, Turns(shared, "b"), queue_limit=100, positions=Positions())
    await send_all(here, [message(f"k{n}") for n in range(5)])
    # Its hint is stale (0), yet it stores at 6 without losing an insert to "a".
    stored = await send_all(there, [message("there")])
    assert stored[0].message.seq == 6
    assert store.refused == 0
    assert store.seqs() == list(range(1, 7))


async def test_a_writer_that_lost_a_range_stores_before_the_other_instance_again() -> None:
    store = Store()
    shared = SharedTurns()
    here_turns, there_turns = Turns(shared, "a"), Turns(shared, "b")
    here = RoomWriters(store, here_turns, queue_limit=100, positions=Positions())
    there = RoomWriters(store, there_turns, queue_limit=100, positions=Positions())
    # "b" loses seq 1 to a third writer, claims the turn and looks the room up.
    store.foreign_at = [1]
    looking = store.newest_gate = asyncio.Event()
    losing = asyncio.create_task(there.store(message("lost once"), 0))
    await store.looking_up.wait()
    assert shared.claimant[ROOM] == "b"
    # Meanwhile "a" has a send: it waits for "b"'s turn instead of storing at 2.
    waiting = asyncio.create_task(here.store(message("waits"), 0))
    await here_turns.held_back.wait()
    assert not waiting.done()
    assert store.seqs() == [1]
    looking.set()
    assert (await losing).message.seq == 2
    assert (await waiting).message.seq == 3
    assert ROOM not in shared.claimant
    assert store.refused == 1  # "b" lost once, "a" never
    assert store.seqs() == [1, 2, 3]


async def test_positions_follow_seqs_across_instances_when_one_waits_for_the_others_turn() -> None:
    store = Store()
    shared, positions = SharedTurns(), Positions()  # one counter, as Redis keeps it
    here_turns = Turns(shared, "a")
    here = RoomWriters(store, here_turns, queue_limit=100, positions=positions)
    there = RoomWriters(store, Turns(shared, "b"), queue_limit=100, positions=positions)
    store.foreign_at = [1]
    looking = store.newest_gate = asyncio.Event()
    losing = asyncio.create_task(there.store(message("lost once"), 0))
    await store.looking_up.wait()
    # "a" reads the turn as it takes positions: "b" holds it, so "a" gives them back.
    waiting = asyncio.create_task(here.store(message("waits"), 0))
    await here_turns.held_back.wait()
    looking.set()
    first, second = await losing, await waiting
    assert (first.message.seq, second.message.seq) == (2, 3)
    assert (first.message.pos or 0) < (second.message.pos or 0)
    assert positions.in_flight == set()


async def test_redis_turns_hold_others_back_until_the_claimant_stored() -> None:
    async with open_redis("memory://", timeout_seconds=5, max_connections=10) as redis:
        here, there = RedisRoomTurns(redis), RedisRoomTurns(redis)
        room = PydanticObjectId()
        assert await there.wait_turn(room) == 0
        await here.stored(room, 8)
        await here.stored(room, 5)  # never moves back
        assert await there.wait_turn(room) == 8
        await here.claim(room)
        assert await here.wait_turn(room) == 8  # its own claim holds it back not
        held_back = asyncio.create_task(there.wait_turn(room))
        await asyncio.sleep(CLAIM_MS / 10_000)
        assert not held_back.done()
        await here.stored(room, 11)
        async with asyncio.timeout(CLAIM_MS / 1000):
            assert await held_back == 11


async def test_a_writer_that_lost_a_range_goes_on_from_where_the_winner_said_it_left() -> None:
    store = Store()
    shared = SharedTurns()
    store.foreign_turns = shared  # the winner records its next seq, as Redis keeps it
    there = RoomWriters(store, Turns(shared, "b"), queue_limit=100, positions=Positions())
    store.foreign_at = [1]
    stored = await send_all(there, [message("lost once"), message("then")])
    assert [s.message.seq for s in stored] == [2, 3]
    assert store.refused == 1
    assert store.lookups == 0  # the winner's word spared the store's lookup
    assert store.seqs() == [1, 2, 3]
