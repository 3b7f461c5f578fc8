"""The subscriber side of the load: thousands of graphql-transport-ws sockets.

Sockets are driven with the ``websockets`` library directly (one connection_init with
``{"authToken": ...}``, then ``subscribe`` frames for messageAdded(roomId, afterSeq)),
or, for the Centrifugo peer, in its client JSON protocol (``bench.centrifugo_wire``:
connect with a JWT, subscribe to the room's channel), in one or more worker processes
so that the generator is not what limits a run. The parent talks to the workers over
pipes (``LoadPool``); each worker keeps the books of its subscribers:

- which seqs each subscriber received (a bitmap), so that a missing seq counts as
  lost and a seq received twice as duplicated, across reconnects too, and how many
  came after a higher seq (reordered: a room's stream is in seq order);
- per round: deliveries, send-to-receive latency (the send time is the first word
  of the message text; sender and receivers share the machine's clock), and
  deliveries per 100 ms for the plots;
- for a reconnect: when each subscriber got its first message sent after it
  resubscribed, i.e. when it had caught up.

A graphql-transport-ws socket's plans are its subscriptions (``rooms``: one
``messageAdded`` per plan), the rooms its one ``events`` subscription must carry
(``account``: ``bench.account_wire``; the books stay per room), or nothing to
subscribe to (``none``: an idle socket, only authenticated).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench import account_wire, centrifugo_wire
from bench.server import raise_open_files
from bench.targets import CENTRIFUGO_JSON, GRAPHQL_TRANSPORT_WS, MESSAGE_ADDED, WireProtocol

SUBPROTOCOL = Subprotocol(GRAPHQL_TRANSPORT_WS)
OPEN_TIMEOUT_SECONDS = 60.0
CONNECT_CONCURRENCY = 200
RECONNECT_ATTEMPTS = 5
BUCKET_SECONDS = 0.1
MAX_ERRORS_KEPT = 20

Stream = Literal["rooms", "account", "none"]


@dataclass(frozen=True)
class Plan:
    """One subscriber to open: whose token, which room, after which seq."""

    token: str
    room: str
    after_seq: int


class Subscriber:
    """The books of one subscription."""

    __slots__ = (
        "base",
        "bits",
        "caught_up_at",
        "distinct",
        "duplicates",
        "highest",
        "open",
        "reordered",
        "resubscribed_at",
        "room",
    )

    def __init__(self, room: str, base: int) -> None:
        self.room = room
        self.base = base
        self.bits = bytearray(64)
        self.distinct = 0
        self.duplicates = 0
        self.highest = base
        self.reordered = 0
        self.open = False
        self.resubscribed_at = 0.0
        self.caught_up_at = 0.0

    def record(self, seq: int) -> bool:
        """Marks ``seq`` received; False if it was already. A new seq below the highest
        received counts as reordered."""
        if seq >= len(self.bits):
            self.bits.extend(bytes(seq + 64 - len(self.bits)))
        if self.bits[seq]:
            self.duplicates += 1
            return False
        if seq < self.highest:
            self.reordered += 1
        self.highest = max(self.highest, seq)
        self.bits[seq] = 1
        self.distinct += 1
        return True

    def received_between(self, first: int, last: int) -> int:
        """How many distinct seqs in first..last were received."""
        return self.bits[first : last + 1].count(1)

    def contiguous(self) -> int:
        """The highest seq up to which every seq after base was received."""
        gap = self.bits.find(0, self.base + 1)
        return (gap if gap >= 0 else len(self.bits)) - 1


class Socket:
    """One WebSocket carrying one or more subscriptions, in the target's protocol."""

    def __init__(
        self,
        worker: Worker,
        url: str,
        token: str,
        subscribers: list[Subscriber],
        protocol: WireProtocol = GRAPHQL_TRANSPORT_WS,
        stream: Stream = "rooms",
    ):
        self._worker = worker
        self._url = url
        self._token = token
        self._protocol = protocol
        self._stream = stream
        self.operations = {str(index + 1): sub for index, sub in enumerate(subscribers)}
        self._by_room = {sub.room: sub for sub in subscribers} if stream == "account" else {}
        self._by_channel: dict[str, Subscriber] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._aborted = False

    async def open(self, resume: bool) -> None:
        """Connects, authenticates and subscribes (after each one's last seq if resuming)."""
        self._aborted = False
        centrifugo = self._protocol == CENTRIFUGO_JSON
        ws = await connect(
            self._url,
            # Centrifugo speaks its JSON protocol when no subprotocol is asked for.
            subprotocols=None if centrifugo else [SUBPROTOCOL],
            compression=None,
            open_timeout=OPEN_TIMEOUT_SECONDS,
            ping_interval=None,
            close_timeout=2,
            max_size=1 << 20,
        )
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
                if centrifugo:
                    await self._subscribe_centrifugo(ws)
                else:
                    await self._subscribe_graphql(ws, resume)
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        reader = self._read_centrifugo(ws) if centrifugo else self._read(ws)
        self._reader = asyncio.create_task(reader)

    async def _subscribe_graphql(self, ws: ClientConnection, resume: bool) -> None:
        init = {"type": "connection_init", "payload": {"authToken": self._token}}
        await ws.send(json.dumps(init))
        ack = json.loads(await ws.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack!r}"[:300])
        if self._stream == "none":
            return
        if self._stream == "account":
            if resume:
                raise RuntimeError("account sockets do not resume (the load keeps no token)")
            await ws.send(account_wire.subscribe_frame())
            for sub in self.operations.values():
                sub.open = True
            return
        for operation, sub in self.operations.items():
            after = sub.contiguous() if resume else sub.base
            variables = {"roomId": sub.room, "afterSeq": after}
            frame = {
                "id": operation,
                "type": "subscribe",
                "payload": {"query": MESSAGE_ADDED, "variables": variables},
            }
            await ws.send(json.dumps(frame))
            sub.open = True
            if resume:
                sub.resubscribed_at = time.time()
                sub.caught_up_at = 0.0

    async def _subscribe_centrifugo(self, ws: ClientConnection) -> None:
        """Connects with the JWT, then subscribes to each room's channel.

        Unlike graphql-transport-ws, every subscribe has a reply; the socket counts as
        open once all replies came, so that no publication can precede its subscription.
        Centrifugo has no afterSeq: a resumed socket would miss what was sent meanwhile.
        """
        await ws.send(centrifugo_wire.connect_command(self._token))
        inbound = centrifugo_wire.read_frame(await ws.recv())
        if centrifugo_wire.CONNECT_COMMAND_ID not in inbound.replies or inbound.problems:
            raise RuntimeError(f"connect refused: {inbound.problems or inbound.replies}"[:300])
        commands = {
            command_id: sub.room for command_id, sub in enumerate(self.operations.values(), start=2)
        }
        for command_id, channel in commands.items():
            await ws.send(centrifugo_wire.subscribe_command(command_id, channel))
        self._by_channel = {sub.room: sub for sub in self.operations.values()}
        pending = set(commands)
        while pending:
            inbound = centrifugo_wire.read_frame(await ws.recv())
            if inbound.problems:
                raise RuntimeError(f"subscribe refused: {inbound.problems[0]}"[:300])
            # A channel subscribed already may get a publication before the last reply.
            self._deliver_centrifugo(inbound, time.time())
            if inbound.pings:
                await ws.send(centrifugo_wire.PONG)
            pending -= set(inbound.replies)
        for sub in self.operations.values():
            sub.open = True

    def _deliver_centrifugo(self, inbound: centrifugo_wire.Inbound, now: float) -> None:
        worker = self._worker
        for publication in inbound.publications:
            sub = self._by_channel.get(publication.channel)
            if sub is None:
                worker.error(f"publication on another channel: {publication.channel}")
                continue
            data = publication.data
            worker.deliver(sub, data["seq"], data["text"], now, publication.size)
        for problem in inbound.problems:
            worker.error(problem)

    async def _read_centrifugo(self, ws: ClientConnection) -> None:
        worker = self._worker
        try:
            async for raw in ws:
                inbound = centrifugo_wire.read_frame(raw)
                self._deliver_centrifugo(inbound, time.time())
                if inbound.pings:
                    await ws.send(centrifugo_wire.PONG)
        except ConnectionClosed as closed:
            if not self._aborted:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
                worker.closed_by_server[code] += 1

    async def _read(self, ws: ClientConnection) -> None:
        worker = self._worker
        try:
            async for raw in ws:
                now = time.time()
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "next" and self._stream == "account":
                    data = (frame.get("payload") or {}).get("data")
                    self._deliver_account(data or {}, now, len(raw))
                elif kind == "next":
                    sub = self.operations.get(frame.get("id"))
                    data = (frame.get("payload") or {}).get("data")
                    if sub is None or not data:
                        worker.error(f"unexpected next frame: {str(raw)[:300]}")
                        continue
                    message = data["messageAdded"]
                    worker.deliver(sub, message["seq"], message["text"], now, len(raw))
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind in ("error", "complete"):
                    worker.error(f"{kind} frame: {str(raw)[:300]}")
        except ConnectionClosed as closed:
            if not self._aborted:
                code = closed.rcvd.code if closed.rcvd is not None else 1006
                worker.closed_by_server[code] += 1

    def _deliver_account(self, data: dict[str, Any], now: float, size: int) -> None:
        worker = self._worker
        read = account_wire.read_event(data)
        if isinstance(read, str):
            worker.other_events[read] += 1
            return
        sub = self._by_room.get(read.room)
        if sub is None:
            worker.error(f"a message of a room the socket does not follow: {read.room}")
        elif read.seq <= sub.base:
            worker.error(f"a message from before the subscription: {read.room} {read.seq}")
        else:
            worker.deliver(sub, read.seq, read.text, now, size)

    def abort(self) -> None:
        """Drops the connection at once, as a network failure would (no close handshake)."""
        self._aborted = True
        if self._ws is not None:
            self._ws.transport.abort()
        if self._reader is not None:
            self._reader.cancel()

    async def close(self) -> None:
        self._aborted = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


class Worker:
    """Everything one load process holds, and the commands it answers."""

    def __init__(self) -> None:
        self.sockets: list[Socket] = []
        self.subscribers: list[Subscriber] = []
        self.closed_by_server: Counter[int] = Counter()
        # Account events other than messages, by kind (none is expected in a run).
        self.other_events: Counter[str] = Counter()
        self.errors: list[str] = []
        self.error_count = 0
        # Opening handshakes that failed and were tried again (not errors unless the
        # last attempt failed too: a client retries, with backoff).
        self.retried_opens = 0
        self.retry_samples: list[str] = []
        self._target: dict[str, int] | None = None
        self._remaining = 0
        self._complete = asyncio.Event()
        self._pending_catch_up = 0
        self._caught_up = asyncio.Event()
        self._new_round()

    def _new_round(self) -> None:
        self.deliveries = 0
        self.duplicates = 0
        self.frame_bytes = 0
        self.latencies = array("d")
        self.buckets: Counter[int] = Counter()
        self.first_receive = 0.0
        self.last_receive = 0.0

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text)

    def retried(self, text: str) -> None:
        self.retried_opens += 1
        if len(self.retry_samples) < MAX_ERRORS_KEPT:
            self.retry_samples.append(text)

    def deliver(self, sub: Subscriber, seq: int, text: str, now: float, size: int) -> None:
        if not sub.record(seq):
            self.duplicates += 1
            return
        self.deliveries += 1
        self.frame_bytes += size
        if not self.first_receive:
            self.first_receive = now
        self.last_receive = now
        try:
            sent = float(text.split(" ", 1)[0])
        except ValueError:
            sent = now
        self.latencies.append(now - sent)
        self.buckets[int(now / BUCKET_SECONDS)] += 1
        if sub.resubscribed_at and not sub.caught_up_at and sent >= sub.resubscribed_at:
            sub.caught_up_at = now
            self._pending_catch_up -= 1
            if self._pending_catch_up <= 0:
                self._caught_up.set()
        target = self._target
        if target is not None and sub.base < seq <= target.get(sub.room, 0):
            self._remaining -= 1
            if self._remaining <= 0:
                self._complete.set()

    # --- commands ---------------------------------------------------------------------

    async def handle(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"command_{name}")
        reply: dict[str, Any] = await handler(**args)
        return reply

    async def command_open(
        self,
        url: str | list[str],
        plans: list[Plan],
        per_socket: int,
        concurrency: int = CONNECT_CONCURRENCY,
        attempts: int = 1,
        protocol: WireProtocol = GRAPHQL_TRANSPORT_WS,
        stream: Stream = "rooms",
    ) -> dict[str, Any]:
        """Opens sockets for ``plans``, ``per_socket`` subscriptions each (same token);
        of several URLs (instances of one server), the sockets take turns."""
        urls = [url] if isinstance(url, str) else url
        started = time.monotonic()
        failed_attempts_before = self.error_count + self.retried_opens
        new: list[Socket] = []
        for first in range(0, len(plans), per_socket):
            group = plans[first : first + per_socket]
            subs = [Subscriber(plan.room, plan.after_seq) for plan in group]
            self.subscribers.extend(subs)
            url_of = urls[len(new) % len(urls)]
            new.append(Socket(self, url_of, group[0].token, subs, protocol, stream))
        failed = await self._open_all(new, concurrency, resume=False, attempts=attempts)
        self.sockets.extend(new)
        return {
            "sockets": len(new),
            "failed_sockets": failed,
            "opened": sum(1 for sock in new for sub in sock.operations.values() if sub.open),
            "seconds": time.monotonic() - started,
            "errors": self.errors[:5],
            "refusals": self.error_count + self.retried_opens - failed_attempts_before,
        }

    async def _open_all(
        self, sockets: list[Socket], concurrency: int, resume: bool, attempts: int
    ) -> int:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(sock: Socket) -> bool:
            for attempt in range(attempts):
                async with gate:
                    try:
                        await sock.open(resume)
                        return True
                    except Exception as exc:
                        text = f"open failed (attempt {attempt + 1}): {exc!r}"[:300]
                        if attempt + 1 < attempts:
                            self.retried(text)
                        else:
                            self.error(text)
                # Backs off before another attempt, as a client would.
                await asyncio.sleep(0.2 * 2**attempt)
            return False

        results = await asyncio.gather(*(one(sock) for sock in sockets))
        return sum(1 for ok in results if not ok)

    async def command_round(self) -> dict[str, Any]:
        """Starts a new round of counting (the seq books carry on)."""
        self._new_round()
        return {}

    async def command_wait(self, expected: dict[str, int], within: float) -> dict[str, Any]:
        """Waits until every open subscriber has every seq up to ``expected[room]``."""
        self._target = expected
        self._remaining = sum(
            max(0, expected.get(sub.room, 0) - sub.base)
            - sub.received_between(sub.base + 1, expected.get(sub.room, 0))
            for sub in self.subscribers
            if sub.open
        )
        self._complete.clear()
        if self._remaining > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self._complete.wait()
        self._target = None
        return self._round_report(expected)

    def _round_report(self, expected: dict[str, int]) -> dict[str, Any]:
        lost = 0
        beyond = 0
        for sub in self.subscribers:
            last = expected.get(sub.room, 0)
            if not sub.open:
                continue
            lost += max(0, last - sub.base) - sub.received_between(sub.base + 1, last)
            beyond += sub.received_between(last + 1, len(sub.bits))
        report = {
            "subscribers": sum(1 for sub in self.subscribers if sub.open),
            "not_opened": sum(1 for sub in self.subscribers if not sub.open),
            "deliveries": self.deliveries,
            "duplicates_round": self.duplicates,
            "duplicates_total": sum(sub.duplicates for sub in self.subscribers),
            "reordered_total": sum(sub.reordered for sub in self.subscribers),
            "lost": lost,
            "beyond_expected": beyond,
            "frame_bytes": self.frame_bytes,
            "first_receive": self.first_receive,
            "last_receive": self.last_receive,
            "latencies": self.latencies.tobytes(),
            "buckets": dict(self.buckets),
            "closed_by_server": dict(self.closed_by_server),
            "other_events": dict(self.other_events),
            "error_count": self.error_count,
            "errors": self.errors[:5],
            "retried_opens": self.retried_opens,
            "retry_samples": self.retry_samples[:5],
            "cpu_seconds": time.process_time(),
        }
        self._new_round()
        return report

    async def command_drop(self, down_seconds: float, concurrency: int) -> dict[str, Any]:
        """Drops every socket at once, waits, and reconnects them all, resuming."""
        dropped_at = time.time()
        for sock in self.sockets:
            sock.abort()
        self._caught_up.clear()
        self._pending_catch_up = sum(1 for sub in self.subscribers if sub.open)
        for sub in self.subscribers:
            sub.open = False
            sub.resubscribed_at = 0.0
            sub.caught_up_at = 0.0
        await asyncio.sleep(down_seconds)
        reconnect_started = time.time()
        failed = await self._open_all(
            self.sockets, concurrency, resume=True, attempts=RECONNECT_ATTEMPTS
        )
        self._pending_catch_up -= sum(1 for sub in self.subscribers if not sub.open)
        return {
            "dropped_at": dropped_at,
            "reconnect_started": reconnect_started,
            "reconnected_at": time.time(),
            "failed_sockets": failed,
        }

    async def command_caught_up(self, within: float) -> dict[str, Any]:
        """Waits until every resubscribed subscriber got a message sent after it resubscribed."""
        if self._pending_catch_up > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self._caught_up.wait()
        times = [sub.caught_up_at for sub in self.subscribers if sub.caught_up_at]
        return {
            "caught_up": len(times),
            "subscribers": len(self.subscribers),
            "last_caught_up": max(times, default=0.0),
            "caught_up_times": times,
        }

    async def command_close(self) -> dict[str, Any]:
        await asyncio.gather(*(sock.close() for sock in self.sockets))
        self.sockets.clear()
        return {}


async def _serve(conn: Connection) -> None:
    worker = Worker()
    while True:
        name, args = await asyncio.to_thread(conn.recv)
        try:
            reply = await worker.handle(name, args)
        except Exception:
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("ok", reply))
        if name == "close":
            return


def worker_main(conn: Connection) -> None:
    """A load process: answers commands until ``close``."""
    raise_open_files()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(conn))


class WorkerFailed(Exception):
    """A load process answered a command with an exception."""


class LoadPool:
    """The load processes of a run; the subscribers are spread over them round-robin."""

    def __init__(self, workers: int) -> None:
        self.size = max(1, workers)
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(self.size):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child,), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes if process.pid is not None]

    async def _ask(self, index: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
        pipe = self._pipes[index]
        await asyncio.to_thread(pipe.send, (name, args))
        status, reply = await asyncio.to_thread(pipe.recv)
        if status != "ok":
            raise WorkerFailed(f"load worker {index}, {name}: {reply}")
        result: dict[str, Any] = reply
        return result

    async def all(self, name: str, args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The same command to every worker, at once."""
        return list(
            await asyncio.gather(*(self._ask(i, name, args or {}) for i in range(self.size)))
        )

    async def each(self, name: str, args: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A command to every worker with arguments of its own."""
        return list(await asyncio.gather(*(self._ask(i, name, args[i]) for i in range(self.size))))

    async def open(
        self,
        url: str | list[str],
        plans: list[Plan],
        per_socket: int = 1,
        concurrency: int = 0,
        attempts: int = 1,
        protocol: WireProtocol = GRAPHQL_TRANSPORT_WS,
        stream: Stream = "rooms",
    ) -> dict[str, Any]:
        """Opens the subscribers, whole sockets round-robin over the workers, speaking
        ``protocol`` (graphql-transport-ws for Plop and the baseline), subscribing as
        ``stream`` says."""
        shares: list[list[Plan]] = [[] for _ in range(self.size)]
        for number, first in enumerate(range(0, len(plans), per_socket)):
            shares[number % self.size].extend(plans[first : first + per_socket])
        gate = concurrency or max(1, CONNECT_CONCURRENCY // self.size)
        replies = await self.each(
            "open",
            [
                {
                    "url": url,
                    "plans": share,
                    "per_socket": per_socket,
                    "concurrency": gate,
                    "attempts": attempts,
                    "protocol": protocol,
                    "stream": stream,
                }
                for share in shares
            ],
        )
        return {
            "sockets": sum(reply["sockets"] for reply in replies),
            "failed_sockets": sum(reply["failed_sockets"] for reply in replies),
            "opened": sum(reply["opened"] for reply in replies),
            "seconds": max(reply["seconds"] for reply in replies),
            "errors": [error for reply in replies for error in reply["errors"]][:5],
            "refusals": sum(reply["refusals"] for reply in replies),
        }

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.all("close")
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for pipe in self._pipes:
            pipe.close()


def merge_rounds(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """One round's books over all workers."""
    latencies = array("d")
    buckets: Counter[int] = Counter()
    closed: Counter[int] = Counter()
    others: Counter[str] = Counter()
    for reply in replies:
        latencies.frombytes(reply["latencies"])
        buckets.update(reply["buckets"])
        closed.update(reply["closed_by_server"])
        others.update(reply["other_events"])
    firsts = [reply["first_receive"] for reply in replies if reply["first_receive"]]
    lasts = [reply["last_receive"] for reply in replies if reply["last_receive"]]
    return {
        "subscribers": sum(reply["subscribers"] for reply in replies),
        "not_opened": sum(reply["not_opened"] for reply in replies),
        "deliveries": sum(reply["deliveries"] for reply in replies),
        "duplicates": sum(reply["duplicates_total"] for reply in replies),
        "reordered": sum(reply["reordered_total"] for reply in replies),
        "lost": sum(reply["lost"] for reply in replies),
        "beyond_expected": sum(reply["beyond_expected"] for reply in replies),
        "frame_bytes": sum(reply["frame_bytes"] for reply in replies),
        "first_receive": min(firsts, default=0.0),
        "last_receive": max(lasts, default=0.0),
        "latencies": latencies,
        "buckets": buckets,
        "closed_by_server": dict(closed),
        "other_events": dict(others),
        "error_count": sum(reply["error_count"] for reply in replies),
        "errors": [error for reply in replies for error in reply["errors"]][:5],
        "retried_opens": sum(reply["retried_opens"] for reply in replies),
        "retry_samples": [text for reply in replies for text in reply["retry_samples"]][:5],
        "load_cpu_seconds": sum(reply["cpu_seconds"] for reply in replies),
    }
