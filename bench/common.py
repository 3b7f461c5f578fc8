"""Pieces every scenario uses: options, servers for a run, and the message sender."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.server import ServerGroup, baseline_server, plop_server
from bench.targets import Account, Target

TEXT_CHARS = 64
# The server's per-socket send queue, raised so that a burst to one socket is never
# cut short as a slow consumer (the load reads as fast as it can).
SOCKET_SEND_QUEUE_FRAMES = 100_000


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
    # Other servers run beside Plop in the same run (fanout, memory): "centrifugo".
    peers: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))


def message_text(now: float | None = None) -> str:
    """A message whose first word is its send time (the receivers' latency clock)."""
    stamp = f"{time.time() if now is None else now:.6f} "
    return stamp + "x" * (TEXT_CHARS - len(stamp))


def plop_settings() -> dict[str, str]:
    return {"PLOP_SOCKET_SEND_QUEUE_FRAMES": str(SOCKET_SEND_QUEUE_FRAMES)}


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


class Sender:
    """Sends messages into rooms, one connection and one sequential sender per room.

    Keeps each room's last seq; with one sender per room, every answer must be the
    previous seq + 1, so a gap or a repeat in the answers is counted.
    """

    def __init__(
        self,
        target: Target,
        account: Account,
        rooms: list[str],
        last_seq: dict[str, int] | None = None,
    ) -> None:
        self.target = target
        self.account = account
        self.rooms = rooms
        self.last_seq = {room: (last_seq or {}).get(room, 0) for room in rooms}
        self.sent = 0
        self.seq_gaps = 0
        self.errors: list[str] = []
        self._connections = {room: target.connection() for room in rooms}

    async def send_one(self, room: str) -> None:
        try:
            seq = await self.target.send(
                self._connections[room], self.account, room, message_text()
            )
        except Exception as exc:
            self.errors.append(str(exc)[:300])
            return
        if seq != self.last_seq[room] + 1:
            self.seq_gaps += 1
        self.last_seq[room] = max(seq, self.last_seq[room])
        self.sent += 1

    async def wave(self) -> None:
        """One message to every room, at once."""
        await asyncio.gather(*(self.send_one(room) for room in self.rooms))

    async def burst(self, count: int) -> None:
        """``count`` messages into every room, each room's as fast as answers come."""

        async def one_room(room: str) -> None:
            for _ in range(count):
                await self.send_one(room)

        await asyncio.gather(*(one_room(room) for room in self.rooms))

    async def paced(self, count: int, interval: float) -> None:
        """``count`` waves, ``interval`` seconds apart (a wave late starts at once)."""
        started = time.monotonic()
        for number in range(count):
            delay = started + number * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.wave()

    async def close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self._connections.values()))
