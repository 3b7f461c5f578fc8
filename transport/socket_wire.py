"""Frames encoded once, written straight to each connection's transport.

A server's WebSocket frames are not masked, so a message handed to thousands of
sockets is the same bytes on every one of them. A shared feed encodes each frame
once (``encoded_text_frame``) and ``SocketWire.write`` gives those bytes to the
socket's transport, instead of passing the text through starlette, uvicorn's ASGI
send and the websockets encoder once per socket, which rebuild the same bytes
each time.

Only uvicorn's websockets (sans-I/O) protocol, the one ``plop serve`` runs, is
written to this way, and only while its connection is open, has nothing of its own
waiting to be written, is under its transport's high-water mark (uvicorn pauses
its own sends there too) and negotiated no extension (compression rewrites every
frame). Otherwise ``write`` answers False and the frame takes the usual way, so
nothing changes for the client either way. uvicorn's protocol attributes read here
(``conn``, ``transport``, ``writable``, ``close_sent``, ``disconnected``) are those
of the pinned minor version; tests/test_socket_wire.py checks them.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

# Where a WebSocket's scope holds its SocketWire, if it has one.
WIRE_SCOPE_KEY = "plop.socket_wire"
_OPEN = State.OPEN


def encoded_text_frame(text: str) -> bytes:
    """The bytes of one unfragmented, unmasked text frame (what a server sends)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class SocketWire:
    """One connection's transport, for frames encoded once for many sockets."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> bool:
        """Writes the frame (or several frames' bytes, joined) if the connection takes
        it as it is; False if it must go through the protocol (closing, paused,
        compressed, or not open yet)."""
        # The checks of ``takes_frames``, written out: this runs once per socket per
        # message of a fan-out, where a call more shows in the profile.
        protocol = self._protocol
        connection = protocol.conn
        if (
            not protocol.writable.is_set()
            or protocol.close_sent
            or protocol.disconnected
            or connection.state is not _OPEN
            or connection.extensions
            or connection.writes
            or connection.expect_continuation_frame
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(frame)
        return True

    def takes_frames(self) -> bool:
        """Whether frames may be written straight once the transport is writable: the
        connection is open, not closing and uncompressed, with nothing of its own
        half-written."""
        protocol = self._protocol
        connection = protocol.conn
        return not (
            protocol.close_sent
            or protocol.disconnected
            or connection.state is not _OPEN
            or connection.extensions
            or connection.writes
            or connection.expect_continuation_frame
            or protocol.transport.is_closing()
        )

    def paused(self) -> bool:
        """Whether the transport is over its high-water mark (uvicorn's own flag)."""
        return not self._protocol.writable.is_set()

    async def writable(self) -> None:
        """Returns once the transport is under its high-water mark (or the connection
        is lost: uvicorn then sets it too, and ``takes_frames`` says no)."""
        await self._protocol.writable.wait()


def socket_wire(scope: Scope) -> SocketWire | None:
    """The WebSocket's wire, if its server gave it one (see ``KeepSocketWire``)."""
    wire = scope.get(WIRE_SCOPE_KEY)
    return wire if isinstance(wire, SocketWire) else None


def keep_socket_wire(scope: Scope, send: Send) -> None:
    """Notes a WebSocket's wire in its scope, from the server's own ``send`` (a method
    of its protocol): only the outermost layer is handed that one."""
    protocol = getattr(send, "__self__", None)
    if isinstance(protocol, WebSocketsSansIOProtocol):
        scope[WIRE_SCOPE_KEY] = SocketWire(protocol)


class KeepSocketWire:
    """``keep_socket_wire`` as a middleware of its own (``app.server_edge`` calls the
    function itself): it must be the outermost one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            keep_socket_wire(scope, send)
        await self.app(scope, receive, send)
