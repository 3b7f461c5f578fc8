"""permessage-deflate is off unless PLOP_WEBSOCKET_COMPRESSION turns it on.

Browsers offer it on every socket; accepted, it keeps zlib state per socket (about
49 KiB in an allocation profile of idle subscribed sockets) and compresses every
frame for every socket. The client here offers it, as a browser does.
"""

from __future__ import annotations

import pytest
import websockets

from tests.support.clients import TRANSPORT_WS
from tests.support.server import ServerProcess


async def negotiated_extensions(server: ServerProcess) -> str | None:
    async with websockets.connect(
        server.ws_url,
        subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        compression="deflate",
    ) as connection:
        assert connection.response is not None
        return connection.response.headers.get("Sec-WebSocket-Extensions")


async def test_an_offered_compression_is_declined_by_default(
    embedded_server: ServerProcess,
) -> None:
    assert await negotiated_extensions(embedded_server) is None


@pytest.mark.timeout(180)
async def test_the_setting_turns_compression_on() -> None:
    server = ServerProcess("compression-on", {"PLOP_WEBSOCKET_COMPRESSION": "true"})
    await server.start()
    try:
        extensions = await negotiated_extensions(server)
    finally:
        await server.stop()
    assert extensions is not None and "permessage-deflate" in extensions
