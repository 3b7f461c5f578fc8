"""One writer per busy room: a room's concurrent sends take their seqs together.

Seqs are gap-free per room and taken by inserting under the unique (room_id, seq)
index, which alone decides between senders and instances (no update has to be
atomic: on FerretDB 1.x none is). If every send tried hint + 1 and walked up on a
duplicate key, C senders of one room would pay about C refused inserts for each
stored message. Instead, on one instance, a room's sends queue behind one writer:

- The writer exists while the room has sends waiting (created by the first, gone
  when the queue is empty), so memory is bounded by the rooms being written to.
- It takes what is queued (at most ``MAX_BATCH``), gives the sends consecutive seqs
  from where the room stands and stores them with one ordered insert. The insert
  stops at the first refused document: those before it are stored, none after.
- A document refused because its idempotency key is taken (a retried clientId whose
  first attempt is stored) resolves to that earlier message, and the seq it did not
  take goes to the next send: no gap. A document refused because its seq is taken
  (another instance stored there) makes the writer find the room's newest seq and
  give the rest new seqs after it.
- Two sends with the same idempotency key waiting at once on this instance are one
  send: the second gets the message of the first.
- Writers of one room on several instances take turns (``RoomTurns``, in Redis):
  each starts from where the last insert of any instance left the room, and one
  that lost a range stores before the others' next insert, so that no instance's
  sends wait for another's queue to drain.
- A room holds at most ``queue_limit`` waiting sends; past that a send is refused
  as RATE_LIMITED (retry after ``QUEUE_FULL_RETRY_SECONDS``), never UNAVAILABLE: a
  busy room is not a backend down.

Every stored message was given to exactly one send (or to the sends sharing its
key), and the writer answers a send only after its message is stored, so the
store-then-publish rule of ``services.messages`` holds for each of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from beanie import PydanticObjectId

from errors import RateLimited, Unavailable
from models import MessageDoc
from services.event_positions import PositionTaker

logger = logging.getLogger(__name__)

# Sends one ordered insert stores at most: large enough that a hot room's queue is
# taken in one or two round trips, small enough to stay far below a command's size
# limit with the longest texts.
MAX_BATCH = 128
# Rounds of one batch lost to other instances before its sends are answered
# UNAVAILABLE; each lost round means the room moved on, so this is never reached
# while the store answers.
MAX_ROUNDS = 1_000
# What a send refused for a full queue is told to wait: a full queue drains in
# well under this at the writer's rate.
QUEUE_FULL_RETRY_SECONDS = 1.0


class MessageInserts(Protocol):
    """What a room writer needs of the store."""

    async def insert_ordered(self, messages: list[MessageDoc]) -> int | None:
        """Stores the messages in order, stopping at the first one a unique index
        refuses: its index (those before it are stored), or None if all were stored."""
        ...

    async def stored_under(self, idempotency_key: str) -> MessageDoc | None:
        """The message stored under this idempotency key, if any."""
        ...

    async def newest_seq(self, room_id: PydanticObjectId, taken: int) -> int:
        """The room's newest stored seq, knowing that ``taken`` is stored (or 0)."""
        ...

    async def stored_up_to(self, message: MessageDoc) -> None:
        """The room's messages up to this one are stored (moves its hint and activity)."""
        ...


class RoomTurns(Protocol):
    """How a room's writers on several instances take turns (``services.room_turns``).
    Only ever hints: the unique index decides."""

    async def turn(self, room_id: PydanticObjectId) -> int | None:
        """The seq after the newest stored, as far as is known (0 if not), or None
        while another instance's writer of the room has the turn."""
        ...

    async def wait_turn(self, room_id: PydanticObjectId) -> int:
        """Waits while another instance's writer of the room has the turn; the seq
        after the newest stored, as far as is known (0 if not)."""
        ...

    async def claim(self, room_id: PydanticObjectId) -> None:
        """This instance's writer lost a range: it stores before the others."""
        ...

    async def stored(self, room_id: PydanticObjectId, next_seq: int) -> None:
        """The room's messages are stored up to ``next_seq - 1``; ends this
        instance's claim."""
        ...


class Outcome(Enum):
    STORED = "stored"  # this send's own message, stored now
    SHARED = "shared"  # another send with the same key, waiting here at once, stored it
    EARLIER = "earlier"  # found in the store under the key: stored by an earlier attempt


@dataclass(frozen=True, slots=True)
class Stored:
    """What a send's message is now, and whose store put it there."""

    message: MessageDoc
    outcome: Outcome


@dataclass(slots=True, eq=False)
class _Send:
    message: MessageDoc
    done: asyncio.Future[Stored] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True, eq=False)
class _Room:
    """One room's waiting sends, and the seq its writer gives next."""

    next_seq: int
    waiting: deque[_Send] = field(default_factory=deque)
    # Every send not answered yet (waiting or being stored), by idempotency key.
    by_key: dict[str, _Send] = field(default_factory=dict)


class RoomWriters:
    """The writers of this instance's busy rooms."""

    def __init__(
        self,
        store: MessageInserts,
        turns: RoomTurns,
        queue_limit: int,
        positions: PositionTaker,
    ) -> None:
        self._store = store
        self._turns = turns
        self._positions = positions
        self._queue_limit = queue_limit
        self._rooms: dict[PydanticObjectId, _Room] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def queued(self, room_id: PydanticObjectId) -> int:
        """How many sends of the room wait or are being stored here."""
        room = self._rooms.get(room_id)
        return len(room.by_key) if room is not None else 0

    async def store(self, message: MessageDoc, seq_hint: int) -> Stored:
        """Stores a new message of its room at the next free seq (``message.seq`` is
        set then); ``seq_hint`` is a lower bound of the room's newest seq."""
        room = self._rooms.get(message.room_id)
        if room is None:
            room = self._rooms[message.room_id] = _Room(next_seq=seq_hint + 1)
            task = asyncio.create_task(self._write(message.room_id, room))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            room.next_seq = max(room.next_seq, seq_hint + 1)
        if (same := room.by_key.get(message.idempotency_key)) is not None:
            stored = await asyncio.shield(same.done)
            return Stored(stored.message, Outcome.SHARED)
        if len(room.by_key) >= self._queue_limit:
            raise RateLimited(
                "too many messages are waiting to be stored in this room; retry shortly",
                retry_after=QUEUE_FULL_RETRY_SECONDS,
            )
        send = _Send(message)
        room.by_key[message.idempotency_key] = send
        room.waiting.append(send)
        return await asyncio.shield(send.done)

    async def _write(self, room_id: PydanticObjectId, room: _Room) -> None:
        """Stores the room's waiting sends, a batch at a time, until none is left."""
        try:
            await asyncio.sleep(0)  # let the sends arriving with the first one queue
            while room.waiting:
                batch = [room.waiting.popleft() for _ in range(min(len(room.waiting), MAX_BATCH))]
                try:
                    await self._store_batch(room_id, room, batch)
                except BaseException as exc:
                    _fail(batch, exc)
                    if not isinstance(exc, Exception):
                        raise
                finally:
                    for send in batch:
                        if room.by_key.get(send.message.idempotency_key) is send:
                            del room.by_key[send.message.idempotency_key]
        finally:
            _fail(list(room.waiting), Unavailable("this instance is stopping; retry"))
            if self._rooms.get(room_id) is room:
                del self._rooms[room_id]

    async def _store_batch(
        self, room_id: PydanticObjectId, room: _Room, batch: list[_Send]
    ) -> None:
        sends = batch
        for _ in range(MAX_ROUNDS):
            known, first_pos = await self._turn_and_positions(room_id, len(sends))
            room.next_seq = max(room.next_seq, known)
            first = room.next_seq
            for offset, send in enumerate(sends):
                send.message.seq = first + offset
                send.message.pos = first_pos + offset
            try:
                refused = await self._store.insert_ordered([send.message for send in sends])
            except BaseException:
                await self._positions.done(first_pos)
                raise
            stored = sends if refused is None else sends[:refused]
            if stored:
                room.next_seq = stored[-1].message.seq + 1
                # Issued together: one round trip (services.script_batches).
                await asyncio.gather(
                    self._positions.done(first_pos), self._turns.stored(room_id, room.next_seq)
                )
            else:
                await self._positions.done(first_pos)
            if stored:
                # Before the answers: a sender that lists its rooms next sees the room
                # moved up (the move shares its write with other rooms', see
                # services.room_progress).
                await self._moved(stored[-1].message)
            for send in stored:
                send.done.set_result(Stored(send.message, Outcome.STORED))
            if refused is None:
                return
            loser, sends = sends[refused], sends[refused + 1 :]
            earlier = await self._store.stored_under(loser.message.idempotency_key)
            if earlier is not None:
                # A retry of a stored send: its seq goes to the next send.
                loser.done.set_result(Stored(earlier, Outcome.EARLIER))
                room.next_seq = loser.message.seq
                if not sends:
                    return
            else:
                # Another instance stored at that seq: go on from where the room
                # stands, before that instance's next insert.
                await self._turns.claim(room_id)
                sends = [loser, *sends]
                # Where the other instance says it left the room (its own claim holds
                # this writer back not) spares the store's lookup when it is past the
                # lost seq; if it is not the newest, the next insert finds out.
                known = await self._turns.wait_turn(room_id)
                if known > loser.message.seq:
                    room.next_seq = known
                else:
                    taken = loser.message.seq
                    room.next_seq = await self._store.newest_seq(room_id, taken) + 1
        raise Unavailable("this room's messages could not be stored; retry the same clientId")

    async def _turn_and_positions(self, room_id: PydanticObjectId, count: int) -> tuple[int, int]:
        """Where the room stands and the first of ``count`` event positions, read and
        taken together (one round trip). Positions follow seqs within a batch and
        across the room's batches, and stay in flight until the insert has answered
        (services.event_positions): positions taken while another instance has the
        turn would precede the seqs it is about to store, so they are given back and
        taken again once the turn is this writer's."""
        known, first_pos = await asyncio.gather(
            self._turns.turn(room_id), self._positions.take(count)
        )
        if known is not None:
            return known, first_pos
        await self._positions.done(first_pos)
        known = await self._turns.wait_turn(room_id)
        return known, await self._positions.take(count)

    async def _moved(self, newest: MessageDoc) -> None:
        try:
            await self._store.stored_up_to(newest)
        except Exception:  # only a hint: a later message moves it again
            logger.warning("moving a room's seq hint failed", exc_info=True)


def _fail(sends: list[_Send], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else Unavailable("this instance is stopping; retry")
    for send in sends:
        if not send.done.done():
            send.done.set_exception(error)
            send.done.exception()  # marks it retrieved: a cancelled sender never reads it
