"""Pieces every scenario uses: options, servers for a run, and the message sender."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.rawhttp import HttpConnection
from bench.server import ServerGroup, baseline_server, plop_server
from bench.targets import Account, Target

TEXT_CHARS = 64
UNAVAILABLE = "UNAVAILABLE"
# The server's per-socket send queue, raised in frames and in bytes so that a burst to
# one socket is never cut short as a slow consumer (the load reads as fast as it can,
# but on a loaded machine it falls behind for a while: at the default 4 MiB, 22 of
# 2,000 account streams were closed in one run).
SOCKET_SEND_QUEUE_FRAMES = 100_000
SOCKET_SEND_QUEUE_BYTES = 64 * 1024 * 1024


@dataclass
class Options:
    """What a scenario runs with; the CLI fills it in (smoke runs use small sizes)."""

    scenario: str
    argv: list[str]
    out: Path
    backends: list[str]
    smoke: bool = False
    subscribers: list[int] = field(default_factory=list)
    concurrency: list[int] = field(default_factory=list)
    messages: int = 0
    paced_messages: int = 0
    rooms: int = 0
    users: int = 0
    workers: int = 0
    duration: float = 0.0
    max_requests: int = 0
    max_subscriptions: int = 0
    per_socket: int = 1
    step: int = 0
    rate: float = 0.0
    down_seconds: float = 0.0
    max_seconds: float = 0.0
    deliveries: int = 0
    room_messages: int = 0
    # account: sockets of each kind measured for memory, and the rooms of the account
    # whose one events subscription is measured.
    memory_sockets: int = 0
    followed_rooms: int = 0
    # Other servers run beside Plop in the same run (fanout, memory): "centrifugo".
    peers: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))


def message_text(now: float | None = None) -> str:
    """A message whose first word is its send time (the receivers' latency clock)."""
    stamp = f"{time.time() if now is None else now:.6f} "
    return stamp + "x" * (TEXT_CHARS - len(stamp))


SEND_QUEUE_NOTE = (
    f"The server's per-socket send queue is raised to {SOCKET_SEND_QUEUE_FRAMES:,} frames "
    f"and {SOCKET_SEND_QUEUE_BYTES // (1024 * 1024)} MiB so that a burst never closes a "
    "socket as a slow consumer."
)


def plop_settings() -> dict[str, str]:
    return {
        "PLOP_SOCKET_SEND_QUEUE_FRAMES": str(SOCKET_SEND_QUEUE_FRAMES),
        "PLOP_SOCKET_SEND_QUEUE_BYTES": str(SOCKET_SEND_QUEUE_BYTES),
    }


@asynccontextmanager
async def running(server: ServerGroup) -> AsyncIterator[ServerGroup]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def parse_backend(backend: str) -> tuple[str, int]:
    """A backend of ``Options.backends``: ``real`` or ``embedded``, or ``real-xN`` for
    N instances of Plop sharing the real services; (backend, instances)."""
    name, _, count = backend.partition("-x")
    return name, int(count) if count else 1


def backend_label(backend: str) -> str:
    name, instances = parse_backend(backend)
    return f"Plop ({name})" if instances == 1 else f"Plop ({name}, {instances} instances)"


@asynccontextmanager
async def plop_target(options: Options, backend: str) -> AsyncIterator[Target]:
    name, instances = parse_backend(backend)
    server_name = f"{options.scenario}-{options.run_id}-plop-{backend}"
    server = plop_server(server_name, name, options.run_id, plop_settings(), instances)
    async with running(server):
        yield Target("plop", backend_label(backend), server)


@asynccontextmanager
async def baseline_target(options: Options) -> AsyncIterator[Target]:
    server = baseline_server(f"{options.scenario}-{options.run_id}-baseline")
    async with running(server):
        yield Target("baseline", "raw FastAPI", server)


class SeqLedger:
    """The seqs one room's sends were answered with, and the sends that failed.

    Together, a room's answers must be the seqs after ``base``, each once: a seq
    answered twice (or one at or below ``base``) is a duplicate, a seq below the
    highest that no answer carried is a gap. Each connection sends one message after
    another, so its own answers must rise: one that does not is out of order.
    A failed send is counted as UNAVAILABLE when the server said so, as an other
    error otherwise.
    """

    def __init__(self, base: int = 0) -> None:
        self.base = base
        self.highest = base
        self.seqs: list[int] = []
        self.errors: list[str] = []
        self.unavailable = 0
        self.out_of_order = 0
        self._latest: dict[object, int] = {}

    def answered(self, seq: int, sender: object = None) -> None:
        """Records the seq of an answer to ``sender`` (a connection)."""
        if seq <= self._latest.get(sender, self.base):
            self.out_of_order += 1
        self._latest[sender] = max(seq, self._latest.get(sender, self.base))
        self.seqs.append(seq)
        self.highest = max(self.highest, seq)

    def failed(self, exc: Exception) -> None:
        self.errors.append(str(exc)[:300])
        if UNAVAILABLE in getattr(exc, "codes", ()):
            self.unavailable += 1

    async def send(
        self, target: Target, connection: HttpConnection, account: Account, room: str
    ) -> float:
        """One send; its round trip in seconds (recorded as failed on an error)."""
        started = time.perf_counter()
        try:
            seq = await target.send(connection, account, room, message_text())
        except Exception as exc:
            self.failed(exc)
        else:
            self.answered(seq, connection)
        return time.perf_counter() - started

    def check(self) -> dict[str, int]:
        """answered, duplicates, seq_gaps, out_of_order, errors and unavailable."""
        after_base = [seq for seq in self.seqs if seq > self.base]
        unique = set(after_base)
        return {
            "answered": len(self.seqs),
            "duplicates": len(self.seqs) - len(unique),
            "seq_gaps": self.highest - self.base - len(unique),
            "out_of_order": self.out_of_order,
            "errors": len(self.errors),
            "unavailable": self.unavailable,
        }


class Sender:
    """Sends messages into rooms: ``per_room`` senders in each room, each on an HTTP
    connection of its own and sending one message after another (``accounts`` take
    turns as the senders, or ``account`` is every sender).

    Each room's answers go to a ``SeqLedger`` that starts at the room's last seq: with
    one sender per room every answer must be the previous seq + 1; with several, the
    answers together must still be the next seqs, each once.
    """

    def __init__(
        self,
        target: Target,
        account: Account,
        rooms: list[str],
        last_seq: dict[str, int] | None = None,
        per_room: int = 1,
        accounts: Sequence[Account] = (),
    ) -> None:
        self.target = target
        self.rooms = rooms
        self.per_room = per_room
        bases = last_seq or {}
        self.ledgers = {room: SeqLedger(bases.get(room, 0)) for room in rooms}
        senders = list(accounts) or [account]
        self._lanes = {
            room: [
                (target.connection(), senders[number % len(senders)]) for number in range(per_room)
            ]
            for room in rooms
        }

    @property
    def last_seq(self) -> dict[str, int]:
        """Each room's highest seq answered (or the seq it started from)."""
        return {room: ledger.highest for room, ledger in self.ledgers.items()}

    @property
    def sent(self) -> int:
        return sum(len(ledger.seqs) for ledger in self.ledgers.values())

    @property
    def seq_gaps(self) -> int:
        """Answers that break a room's seqs: gaps, repeats and answers out of order."""
        checks = [ledger.check() for ledger in self.ledgers.values()]
        return sum(c["seq_gaps"] + c["duplicates"] + c["out_of_order"] for c in checks)

    @property
    def errors(self) -> list[str]:
        return [error for ledger in self.ledgers.values() for error in ledger.errors]

    @property
    def unavailable(self) -> int:
        return sum(ledger.unavailable for ledger in self.ledgers.values())

    async def send_one(self, room: str, lane: int = 0) -> None:
        connection, account = self._lanes[room][lane]
        await self.ledgers[room].send(self.target, connection, account, room)

    async def wave(self) -> None:
        """One message to every room, at once."""
        await asyncio.gather(*(self.send_one(room) for room in self.rooms))

    async def burst(self, count: int) -> None:
        """``count`` messages into every room, each room's as fast as its senders'
        answers come."""
        await self.paced(count, 0.0)

    async def paced(self, count: int, interval: float) -> None:
        """``count`` messages into every room, ``interval`` seconds apart: the room's
        next free sender takes each when it is due (one due late goes at once)."""
        started = time.monotonic()
        taken = dict.fromkeys(self.rooms, 0)

        async def lane(room: str, number: int) -> None:
            while taken[room] < count:
                index = taken[room]
                taken[room] += 1
                delay = started + index * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.send_one(room, number)

        await asyncio.gather(
            *(lane(room, number) for room in self.rooms for number in range(self.per_room))
        )

    async def close(self) -> None:
        await asyncio.gather(
            *(connection.close() for lanes in self._lanes.values() for connection, _ in lanes)
        )


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, every process)."""
    times = psutil.cpu_times()
    # guest time is already counted in user time on Linux; idle and iowait are not busy.
    busy: float = (
        times.user
        + times.system
        + sum(getattr(times, name, 0.0) for name in ("nice", "irq", "softirq", "steal"))
    )
    return busy
