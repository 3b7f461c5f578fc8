"""Who follows what in the scale scenario, and the paced sender spread over the rooms.

``users`` accounts each own rooms of their own (room j belongs to user j mod users,
its only member: setting up needs no invitations, so thousands of rooms take one
mutation each). Socket i sits on instance i mod N and follows room (i div N) mod
rooms with its owner's token: every instance holds as many sockets, and each room's
followers are spread over the instances as a load balancer spreads sockets, so every
message is delivered by every instance that holds one of its followers.

The sends go to the front, a Plop process of their own that holds no socket: what the
socket-holding instances spend is then what a room's events cost them, not the
sends'.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.common import SeqLedger
from bench.load import Plan
from bench.rawhttp import HttpConnection
from bench.server import HOST
from bench.targets import CREATE_GROUP, Account, Target

SET_UP_CONCURRENCY = 8


@dataclass(frozen=True)
class ScaleLayout:
    """The run's accounts and rooms; the same for every instance count of a run."""

    accounts: list[Account]
    rooms: list[str]

    def owner_of(self, room_index: int) -> Account:
        return self.accounts[room_index % len(self.accounts)]

    def room_of_socket(self, socket: int, instances: int) -> int:
        return (socket // instances) % len(self.rooms)

    def plans(
        self, sockets: int, instances: int, last_seq: dict[str, int]
    ) -> list[list[tuple[int, Plan]]]:
        """Per instance, its sockets as (room index, plan): one messageAdded each."""
        shares: list[list[tuple[int, Plan]]] = [[] for _ in range(instances)]
        for socket in range(sockets):
            index = self.room_of_socket(socket, instances)
            room = self.rooms[index]
            plan = Plan(self.owner_of(index).token, room, last_seq[room])
            shares[socket % instances].append((index, plan))
        return shares


async def build(target: Target, users: int, rooms: int) -> ScaleLayout:
    """Signs up ``users`` accounts; each creates its share of ``rooms`` rooms alone."""
    accounts = await target.sign_up(users)
    room_ids: list[str] = [""] * rooms
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(rooms):
        queue.put_nowait(index)

    async def worker() -> None:
        connection = target.connection()
        try:
            while not queue.empty():
                index = queue.get_nowait()
                owner = accounts[index % len(accounts)]
                variables: dict[str, object] = {"title": f"scale {index}", "memberIds": []}
                data = await target.call(connection, CREATE_GROUP, variables, owner.token)
                room_ids[index] = data["createGroupRoom"]["id"]
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(min(SET_UP_CONCURRENCY, rooms))))
    return ScaleLayout(accounts, room_ids)


class FrontSender:
    """Sends into the layout's rooms through one instance (the front), each room's
    messages as its owner, on a few kept-alive connections; each room's answers are
    kept in a ``SeqLedger``, which must find every seq once."""

    def __init__(
        self,
        target: Target,
        front_port: int,
        layout: ScaleLayout,
        last_seq: dict[str, int],
        connections: int,
    ) -> None:
        self._target = target
        self._layout = layout
        self.ledgers = {room: SeqLedger(last_seq[room]) for room in layout.rooms}
        self._idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        self._all = [HttpConnection(HOST, front_port) for _ in range(max(1, connections))]
        for connection in self._all:
            self._idle.put_nowait(connection)

    @property
    def last_seq(self) -> dict[str, int]:
        return {room: ledger.highest for room, ledger in self.ledgers.items()}

    @property
    def sent(self) -> int:
        return sum(len(ledger.seqs) for ledger in self.ledgers.values())

    @property
    def errors(self) -> list[str]:
        return [error for ledger in self.ledgers.values() for error in ledger.errors]

    @property
    def seq_gaps(self) -> int:
        """Answers that break a room's seqs: gaps, repeats and answers out of order."""
        checks = [ledger.check() for ledger in self.ledgers.values()]
        return sum(c["seq_gaps"] + c["duplicates"] + c["out_of_order"] for c in checks)

    async def _send(self, index: int) -> None:
        room = self._layout.rooms[index]
        connection = await self._idle.get()
        try:
            owner = self._layout.owner_of(index)
            await self.ledgers[room].send(self._target, connection, owner, room)
        finally:
            self._idle.put_nowait(connection)

    async def wave(self) -> None:
        """One message into every room, as fast as the connections go."""
        await asyncio.gather(*(self._send(index) for index in range(len(self._layout.rooms))))

    async def paced(self, rate: float, seconds: float) -> int:
        """``rate`` messages a second for ``seconds``, room after room in turn, each
        due at its own time (one due while every connection is busy waits for one);
        the number sent."""
        count = max(1, round(rate * seconds))
        rooms = len(self._layout.rooms)
        started = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        for number in range(count):
            delay = started + number / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._send(number % rooms)))
        await asyncio.gather(*tasks)
        return count

    async def close(self) -> None:
        await asyncio.gather(*(connection.close() for connection in self._all))
