"""A WebSocket client that shows every frame and the close code, on both subprotocols.

gql hides how a socket ends; tests of session and membership endings need to see
the exact close code, a ``connection_error`` frame, and that no data frame came
after the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.clients import EVENT_TIMEOUT_SECONDS, TRANSPORT_WS
from tests.support.server import ServerProcess


@dataclass
class Ending:
    """How a socket ended: its close code, and the frames that came before it."""

    code: int | None
    frames: list[dict[str, Any]] = field(default_factory=list)

    def payloads(self) -> list[dict[str, Any]]:
        """The data payloads (next / data frames) among the frames."""
        return [frame["payload"] for frame in self.frames if frame["type"] in ("next", "data")]


class RawSocket:
    """One authenticated socket speaking graphql-transport-ws or graphql-ws."""

    def __init__(self, connection: ClientConnection, subprotocol: str) -> None:
        self._connection = connection
        self.subprotocol = subprotocol

    async def subscribe(
        self, operation_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        kind = "subscribe" if self.subprotocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self._connection.send(
            json.dumps({"id": operation_id, "type": kind, "payload": payload})
        )

    async def start_operation(self, operation_id: str, payload: dict[str, Any]) -> None:
        """Starts an operation with a payload as given (no query of its own needed)."""
        kind = "subscribe" if self.subprotocol == TRANSPORT_WS else "start"
        await self._connection.send(
            json.dumps({"id": operation_id, "type": kind, "payload": payload})
        )

    async def end_operation(self, operation_id: str) -> None:
        """Completes (graphql-transport-ws) or stops (graphql-ws) an operation."""
        kind = "complete" if self.subprotocol == TRANSPORT_WS else "stop"
        await self._connection.send(json.dumps({"id": operation_id, "type": kind}))

    async def frame(self, within: float = EVENT_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The next frame other than keep-alives; raises ConnectionClosed at the end."""
        async with asyncio.timeout(within):
            while True:
                frame: dict[str, Any] = json.loads(await self._connection.recv())
                if frame["type"] not in ("ka", "ping", "pong"):
                    return frame

    async def ending(self, within: float) -> Ending:
        """Reads every frame until the socket closes; a code of None if it is still
        open at the deadline (the frames read show what it did instead)."""
        ending = Ending(code=None)
        try:
            async with asyncio.timeout(within):
                while True:
                    ending.frames.append(await self.frame(within))
        except websockets.ConnectionClosed as closed:
            ending.code = closed.rcvd.code if closed.rcvd is not None else None
        except TimeoutError:
            pass
        return ending


@asynccontextmanager
async def raw_socket(
    server: ServerProcess, subprotocol: str, token: str
) -> AsyncIterator[RawSocket]:
    """A socket past connection_init (acknowledged) with the token."""
    async with websockets.connect(server.ws_url, subprotocols=[subprotocol]) as connection:  # type: ignore[list-item]
        await connection.send(
            json.dumps({"type": "connection_init", "payload": {"authToken": token}})
        )
        socket = RawSocket(connection, subprotocol)
        ack = await socket.frame()
        assert ack["type"] == "connection_ack", ack
        yield socket
