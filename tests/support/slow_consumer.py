"""Slow consumers, through a real server: a client that reads only when told.

For backpressure to reach the server's send queue after a few hundred KiB rather
than megabytes, the client's socket has a tiny receive buffer and a small maximum
segment size (the server's send buffer grows with the segment size), and it reads
with plain socket calls, so nothing below it buffers frames for it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from tests.support.chat import direct_room, send
from tests.support.clients import TRANSPORT_WS, Account, sign_up, wait_active_subscriptions
from tests.support.server import ServerProcess
from transport.socket_writer import SLOW_CONSUMER_CODE

# Each message is sent to every one of a socket's subscriptions: a burst of frames
# per message, below the queue's size, so a client that reads keeps up.
SUBSCRIPTIONS_PER_SOCKET = 10
TEXT = "x" * 3_990  # near the 4,000-character cap: few messages fill the buffers
MAX_MESSAGES = 80
CLOSE_WITHIN_SECONDS = 20.0
# A tiny receive buffer (the kernel doubles it) and segment size for the client.
CLIENT_RECEIVE_BUFFER = 4_096
CLIENT_SEGMENT_BYTES = 536
MESSAGE_ADDED_SEQ = "subscription($r: ID!) { messageAdded(roomId: $r) { seq text } }"


class RawClient:
    """A graphql-transport-ws client over a plain socket: it reads only when told."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        self.texts: list[dict[str, Any]] = []

    @classmethod
    @asynccontextmanager
    async def connected(cls, server: ServerProcess, token: str) -> AsyncIterator[RawClient]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, CLIENT_SEGMENT_BYTES)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(10):
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
                client = cls(
                    sock,
                    ClientProtocol(
                        parse_uri(server.ws_url),
                        subprotocols=[Subprotocol(TRANSPORT_WS)],
                        max_size=None,
                    ),
                )
                client._protocol.send_request(client._protocol.connect())
                await client._flush()
                while client._protocol.state is State.CONNECTING:
                    await client.read_some()
                assert client._protocol.handshake_exc is None, client._protocol.handshake_exc
                await client.send({"type": "connection_init", "payload": {"authToken": token}})
                while not client.texts:
                    await client.read_some()
                assert client.texts.pop(0)["type"] == "connection_ack"
            yield client
        finally:
            sock.close()

    @property
    def close_received(self) -> Close | None:
        return self._protocol.close_rcvd

    async def send(self, message: dict[str, Any]) -> None:
        self._protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def subscribe(self, operation_id: str, query: str, **variables: Any) -> None:
        payload = {"query": query, "variables": variables}
        await self.send({"type": "subscribe", "id": operation_id, "payload": payload})

    async def read_some(self) -> None:
        """One read from the socket; the text frames it completed go to ``texts``."""
        data = await asyncio.get_running_loop().sock_recv(self._sock, 65_536)
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        for event in self._protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.texts.append(json.loads(bytes(event.data)))
        with suppress(OSError):  # the peer may be gone: only replies are left to send
            await self._flush()

    async def read_until_closed(self) -> None:
        while self._protocol.state is not State.CLOSED:
            await self.read_some()

    def seqs(self) -> dict[str, list[int]]:
        """The seqs received, per subscription."""
        received: dict[str, list[int]] = {}
        for text in self.texts:
            if text["type"] == "next":
                seq = text["payload"]["data"]["messageAdded"]["seq"]
                received.setdefault(text["id"], []).append(seq)
        return received

    async def _flush(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                await asyncio.get_running_loop().sock_sendall(self._sock, chunk)


async def subscribe_all(client: RawClient, room_id: str) -> None:
    for n in range(SUBSCRIPTIONS_PER_SOCKET):
        await client.subscribe(str(n), MESSAGE_ADDED_SEQ, r=room_id)


async def assert_a_stuck_client_gets_1013_and_a_reader_keeps_up(server: ServerProcess) -> None:
    """Two clients of one user follow a room on many subscriptions each; one stops
    reading. Messages are sent until the server gives the stuck one up: the reader got
    every message, the stuck one a gap-free start of them, then the close 1013."""
    alice, bob = await sign_up(server), await sign_up(server)
    room_id = await direct_room(server, alice, bob)
    async with (
        RawClient.connected(server, bob.token) as stuck,
        RawClient.connected(server, bob.token) as reader,
    ):
        await subscribe_all(stuck, room_id)
        await subscribe_all(reader, room_id)
        await wait_active_subscriptions(server, 2 * SUBSCRIPTIONS_PER_SOCKET)
        reading = asyncio.create_task(reader.read_until_closed())
        sent = await send_until_the_server_gives_up(server, alice, room_id)
        # The reader, under the same load, got every message on every subscription.
        everything = list(range(1, sent + 1))
        async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
            # The reader's task fills its list: there is no event to await here.
            while sum(map(len, reader.seqs().values())) < sent * SUBSCRIPTIONS_PER_SOCKET:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert reader.seqs() == {str(n): everything for n in range(SUBSCRIPTIONS_PER_SOCKET)}
        assert reader.close_received is None and not reading.done()
        reading.cancel()
        # The stuck client reads again: what was written before the close, then 1013.
        async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
            await stuck.read_until_closed()
    assert stuck.close_received is not None, "the server cut the socket without a close frame"
    assert stuck.close_received.code == SLOW_CONSUMER_CODE == 1013
    # Each subscription got a gap-free start of the messages, and not all of them.
    delivered = stuck.seqs()
    assert sum(map(len, delivered.values())) < sent * SUBSCRIPTIONS_PER_SOCKET
    for seqs in delivered.values():
        assert seqs == everything[: len(seqs)]


async def send_until_the_server_gives_up(
    server: ServerProcess, sender: Account, room_id: str
) -> int:
    """Sends until the server logs a slow consumer (or MAX_MESSAGES); returns the count.

    The log only says when to stop sending; what is asserted is what the clients get.
    """
    logged_before = server.log_path.stat().st_size  # the log is kept across runs
    for count in range(1, MAX_MESSAGES + 1):
        await send(server, sender, room_id, f"{count} {TEXT}")
        with server.log_path.open("rb") as log:
            log.seek(logged_before)
            if b"closing a slow consumer" in log.read():
                return count
    return MAX_MESSAGES


class StuckSocket:
    """A socket adapter whose sends never complete, like a peer that stopped reading."""

    def __init__(self, stuck: bool = True) -> None:
        self.sent: list[Mapping[str, object]] = []
        self.closed: tuple[int, str] | None = None
        self._stuck = stuck
        self.released = asyncio.Event()

    async def send_json(self, message: Mapping[str, object]) -> None:
        if self._stuck:
            await self.released.wait()
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        raise NotImplementedError
