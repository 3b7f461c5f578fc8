"""Every frame to a socket goes through one bounded queue, written by one task.

A client that stops reading makes its frames pile up here instead of in server
memory without bound or in the tasks that produce them: once ``max_frames`` frames,
or ``max_bytes`` of them, are waiting, the socket is closed with 1013 (try again
later) and the client resumes with afterSeq. Producers never wait on a socket, so a
slow client slows no one else. Frames are queued as the JSON text they are sent as
(encoded once, when queued), so their size is known: ASCII, since JSON escapes the
rest, so a frame's characters are its bytes.

The one exception keeps that order: a frame a shared feed encoded once for many
sockets (``offer_encoded``) is written to the transport at once when nothing waits
before it and the transport is under its high-water mark (``transport.socket_wire``);
a client that stops reading soon pauses the transport, and its frames queue here
with their bytes. Once the transport drains, the writer writes every such frame
waiting at the head of the queue in one write: a client that fell behind costs one
append per frame and one write per catch-up, not a task step and an encoding per
frame.

Frames a shared feed offers a socket within one turn of the event loop are held
and written together at the end of that turn (``_TurnWrites``), as one write of all
their bytes: a feed that is handed a batch of messages at once (the broker's
consumer dispatches what one fetch brought) then costs each socket one write per
batch, not one per message. Holding never reorders a socket's frames (a frame that
takes the queue first puts the held ones in it, ahead of itself), never holds more
than ``HELD_MAX_FRAMES`` frames or ``HELD_MAX_BYTES`` bytes (past those they are
written at once), and never outlives the turn.

An operation served by a shared feed writes through its ``OperationFrames``: the
operation's frame prefix around the feed's payload, built once per payload for
every operation with the same prefix (``SharedFrame``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import suppress
from typing import Any

from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.async_base_view import AsyncWebSocketAdapter

from observability.metrics import DELIVERIES, REFUSED_SEND_QUEUE_FULL, SOCKETS_REFUSED
from transport.socket_limits import LimitCodedWebSocket
from transport.socket_wire import encoded_text_frame, socket_wire

logger = logging.getLogger(__name__)

SLOW_CONSUMER_CODE = 1013
# The frame types that carry an operation's result, in either subprotocol.
RESULT_FRAME_TYPES = frozenset({"next", "data"})
# How long a close waits for the frames queued before it (e.g. connection_error).
CLOSE_FLUSH_SECONDS = 5.0
# What one socket holds for the end of the loop's turn at most; past it, the held
# frames are written at once (a long batch still costs a write per this many).
HELD_MAX_FRAMES = 64
HELD_MAX_BYTES = 64 * 1024


class _TurnWrites:
    """The sockets of one event loop holding frames for the end of its current turn.

    One callback per turn writes them all, whatever the number of sockets: scheduled
    with ``call_soon`` by the first socket to hold a frame, it runs once the callbacks
    already ready (the task handing out a batch, among them) have run.
    """

    __slots__ = ("_loop", "_scheduled", "_sockets")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sockets: list[QueuedWebSocket] = []
        self._scheduled = False

    def hold(self, socket: QueuedWebSocket) -> None:
        self._sockets.append(socket)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._write_all)

    def _write_all(self) -> None:
        sockets, self._sockets = self._sockets, []
        self._scheduled = False
        for socket in sockets:
            socket.write_held()


_TURN_WRITES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _TurnWrites] = (
    weakref.WeakKeyDictionary()
)


def _turn_writes() -> _TurnWrites:
    loop = asyncio.get_running_loop()
    turn = _TURN_WRITES.get(loop)
    if turn is None:
        turn = _TURN_WRITES[loop] = _TurnWrites(loop)
    return turn


def _json_text(message: Mapping[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"))


class QueuedWebSocket:
    """Wraps strawberry's socket adapter with a send queue bounded in frames and bytes
    (``max_bytes`` None: in frames only)."""

    def __init__(
        self, adapter: AsyncWebSocketAdapter, max_frames: int, max_bytes: int | None = None
    ) -> None:
        self._adapter = adapter
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        # A frame is its JSON text (encoded once, for this socket or for many), with
        # its WebSocket bytes when a shared feed encoded them for the wire. A deque
        # and one wake-up future, not an asyncio.Queue: fan-out puts a frame to
        # thousands of sockets per message, and the queue's bookkeeping showed up.
        self._frames: deque[str | tuple[str, bytes]] = deque()
        # The bytes of the queued frames and of the one being written.
        self._queued_bytes = 0
        # Strawberry's socket adapter adds Plop's error codes as it encodes.
        self._encode: Callable[[Mapping[str, object]], str] = (
            adapter.encode_frame if isinstance(adapter, LimitCodedWebSocket) else _json_text
        )
        self._writing = False  # a frame taken off the deque is being written
        self._drained: asyncio.Future[None] | None = None  # what close() waits on
        self._closed = False
        self._ended = False
        self._aborting: asyncio.Task[None] | None = None
        # Operations that answer once (queries, mutations) still running: ``finish``
        # lets them answer before it closes.
        self._answering: set[asyncio.Task[Any]] = set()
        # Started by a frame that has to wait, ended once no frame waits: most frames of
        # a shared feed go straight to the transport, and an idle socket holds no task.
        self._writer: asyncio.Task[None] | None = None
        # Plain text goes straight to the socket; anything else is encoded by strawberry.
        self._text_socket = adapter.ws if isinstance(adapter, ASGIWebSocketAdapter) else None
        # Frames encoded once for many sockets go straight to the transport when they
        # can (transport.socket_wire), held until the end of the loop's turn first.
        self._wire = socket_wire(self._text_socket.scope) if self._text_socket else None
        # Held for the end of this turn (text and bytes), only while nothing is queued
        # or being written: whatever takes the queue puts these in it first.
        self._held: list[tuple[str, bytes]] | None = None
        self._held_bytes = 0

    def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        return self._adapter.iter_json(ignore_parsing_errors=ignore_parsing_errors)

    async def send_json(self, message: Mapping[str, object]) -> None:
        # Frames rendered once for many sockets come through offer() and are counted
        # by their feed; these are the results strawberry rendered for this socket.
        if self.offer(self._encode(message)):
            if message.get("type") in RESULT_FRAME_TYPES:
                DELIVERIES.inc()
        elif self._aborting is not None:
            await self._aborting

    def offer(self, frame: str) -> bool:
        """Queues a frame's text without waiting; False if the socket takes no more."""
        return self._queue(frame, len(frame))

    def _queue(self, frame: str | tuple[str, bytes], size: int) -> bool:
        if self._held is not None:
            self._queue_held()
        if self._closed:
            return False
        if len(self._frames) >= self._max_frames or self._over_bytes(size):
            logger.warning(
                "closing a slow consumer",
                extra={"queued": len(self._frames), "queued_bytes": self._queued_bytes},
            )
            SOCKETS_REFUSED.labels(reason=REFUSED_SEND_QUEUE_FULL).inc()
            self._closed = True
            self._aborting = asyncio.create_task(
                self._abort(SLOW_CONSUMER_CODE, "Slow consumer: resume with afterSeq")
            )
            return False
        self._frames.append(frame)
        self._queued_bytes += size
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return True

    def _over_bytes(self, size: int) -> bool:
        # A frame larger than the whole bound still goes when nothing waits before it:
        # the bound is on what piles up, not on one result.
        return (
            self._max_bytes is not None
            and self._queued_bytes > 0
            and self._queued_bytes + size > self._max_bytes
        )

    def offer_encoded(self, text: str, encoded: bytes) -> bool:
        """Like ``offer``, for a frame also given as its encoded bytes: when nothing is
        queued before it, held and written with the others of this turn in one write,
        if the connection takes them as they are."""
        wire = self._wire
        if wire is None:
            return self._queue(text, len(text))
        if not self._closed and not self._frames and not self._writing:
            held = self._held
            if held is None:
                self._held = [(text, encoded)]
                self._held_bytes = len(encoded)
                _turn_writes().hold(self)
                return True
            held.append((text, encoded))
            self._held_bytes += len(encoded)
            if len(held) >= HELD_MAX_FRAMES or self._held_bytes >= HELD_MAX_BYTES:
                self.write_held()
            return True
        # Its bytes wait with it while the wire may take them later (not compressed).
        frame = (text, encoded) if wire.takes_frames() else text
        return self._queue(frame, len(text))

    def write_held(self) -> None:
        """Writes the frames held this turn in one write, or queues them (in order)
        if the connection does not take them now (paused, closing, compressed)."""
        held = self._held
        if held is None:
            return
        if self._closed:  # ended: what was held is dropped, as what was queued is
            self._held = None
            return
        wire = self._wire
        assert wire is not None, "only a socket with a wire holds frames"
        data = held[0][1] if len(held) == 1 else b"".join(frame[1] for frame in held)
        if wire.write(data):
            self._held = None
            return
        self._queue_held()

    def _queue_held(self) -> None:
        """Puts the held frames in the queue, ahead of anything offered after them."""
        held, self._held = self._held, None
        assert held is not None and self._wire is not None
        takes_frames = self._wire.takes_frames()
        for text, encoded in held:
            if not self._queue((text, encoded) if takes_frames else text, len(text)):
                return  # the socket takes no more: the rest goes with it

    def answering(self, task: asyncio.Task[Any]) -> None:
        """Notes an operation that answers once, running in ``task``, until it ends."""
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def finish(self, code: int, reason: str) -> None:
        """Closes once the operations that answer once have answered and their frames,
        with those queued before, are written (each wait bounded)."""
        if self._answering and not self._closed:
            await asyncio.wait(tuple(self._answering), timeout=CLOSE_FLUSH_SECONDS)
        await self.close(code, reason)

    async def close(self, code: int, reason: str) -> None:
        """Closes after the frames queued so far are written (bounded wait)."""
        if self._closed:
            return
        if self._held is not None:
            self._queue_held()
        self._closed = True
        if self._frames or self._writing:
            self._drained = asyncio.get_running_loop().create_future()
            with suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_FLUSH_SECONDS):
                    await self._drained
        await self._stop_writer()
        with suppress(Exception):  # the peer may be gone already
            await self._adapter.close(code, reason)

    async def end(
        self, code: int, reason: str, last_frame: Mapping[str, object] | None = None
    ) -> None:
        """Closes at once: frames still queued are dropped, ``last_frame`` goes first.

        For a socket whose session ended: nothing queued for it may reach the peer.
        """
        if self._ended:
            return
        self._ended = self._closed = True
        self._held = None
        self._frames.clear()
        await self._stop_writer()
        self._queued_bytes = 0
        with suppress(Exception):  # the peer may be gone already
            if last_frame is not None:
                await self._adapter.send_json(last_frame)
            await self._adapter.close(code, reason)

    async def _abort(self, code: int, reason: str) -> None:
        self._closed = True
        await self._stop_writer()
        with suppress(Exception):
            await self._adapter.close(code, reason)

    async def _write(self) -> None:
        """Writes the queued frames in order, and ends once none is left."""
        frames = self._frames
        while frames:
            self._writing = True
            try:
                if isinstance(frames[0], tuple):
                    await self._write_encoded()
                else:
                    await self._send_head()
            except Exception:
                # The peer is gone; the receive loop notices and shuts the handler down.
                self._closed = True
            finally:
                self._writing = False
        # No await since the deque was seen empty: the next frame queued starts a writer.
        self._writer = None
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def _write_encoded(self) -> None:
        """Writes every encoded frame at the head of the queue in one write, once the
        transport takes more; through the protocol if the wire no longer can."""
        wire, frames = self._wire, self._frames
        assert wire is not None
        # Another write may pause the transport again before this task runs.
        while wire.paused():
            await wire.writable()
        if not wire.takes_frames():
            await self._send_head()
            return
        texts_size = 0
        batch: list[bytes] = []
        while frames and isinstance(head := frames[0], tuple):
            frames.popleft()
            texts_size += len(head[0])
            batch.append(head[1])
        self._queued_bytes -= texts_size
        wire.write(b"".join(batch) if len(batch) > 1 else batch[0])

    async def _send_head(self) -> None:
        """Sends the frame at the head of the queue the usual way, as text."""
        head = self._frames.popleft()
        text = head[0] if isinstance(head, tuple) else head
        try:
            await self._send_text(text)
        finally:
            self._queued_bytes -= len(text)

    async def _send_text(self, text: str) -> None:
        if self._text_socket is not None:
            await self._text_socket.send_text(text)
        else:
            await self._adapter.send_json(json.loads(text))

    async def _stop_writer(self) -> None:
        writer = self._writer
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if self._writer is writer:
                self._writer = None

    async def shutdown(self) -> None:
        """Ends the writer when the connection's handler is done."""
        self._closed = True
        await self._stop_writer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)


class SharedFrame:
    """The last frame built around a payload for every operation with one prefix.

    A feed hands the same payload object to each of its followers in turn, and most
    clients use the same operation ids: the followers with one prefix then send one
    frame, built once per payload, not once per socket (identical bytes, shared).
    """

    __slots__ = ("__weakref__", "encoded", "frame", "payload", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.payload: str | None = None
        self.frame = ""
        self.encoded = b""  # the frame as the WebSocket frame's bytes

    def around(self, payload: str) -> SharedFrame:
        """This frame, around the payload (built again only for a new payload)."""
        if payload is not self.payload:
            self.frame = f"{self.prefix}{payload}}}"
            self.encoded = encoded_text_frame(self.frame)
            self.payload = payload
        return self


# One SharedFrame per prefix in use, gone with the last operation that uses it.
_SHARED_FRAMES: weakref.WeakValueDictionary[str, SharedFrame] = weakref.WeakValueDictionary()


def shared_frame(prefix: str) -> SharedFrame:
    shared = _SHARED_FRAMES.get(prefix)
    if shared is None:
        shared = _SHARED_FRAMES[prefix] = SharedFrame(prefix)
    return shared


class OperationFrames:
    """One operation's frames around payloads rendered once for many sockets."""

    __slots__ = ("_frame", "_is_open", "_socket")

    def __init__(self, socket: QueuedWebSocket, prefix: str, is_open: Callable[[], bool]) -> None:
        self._socket = socket
        self._frame = shared_frame(prefix)
        self._is_open = is_open

    def deliver(self, payload: str) -> bool:
        # A client that completed the operation gets nothing more for its id.
        if not self._is_open():
            return False
        frame = self._frame.around(payload)
        return self._socket.offer_encoded(frame.frame, frame.encoded)


def frame_prefix(fields: dict[str, str]) -> str:
    """The frame's text up to its payload, which follows with the closing brace."""
    return json.dumps({**fields, "payload": None}).removesuffix("null}")
