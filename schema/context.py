"""The per-request (or per-socket) context every resolver receives."""

from __future__ import annotations

from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from auth.sessions import SessionInfo
from models import UserDoc
from services import Services


class Context(BaseContext):
    """Services, the caller's token, and the viewer once a resolver resolved it."""

    def __init__(self, services: Services, token: str | None, over_websocket: bool) -> None:
        super().__init__()
        self.services = services
        self.token = token
        # A socket lives for hours: its token is checked again for every operation,
        # so that logOut ends what it may start at once.
        self.over_websocket = over_websocket
        self.viewer: UserDoc | None = None
        # The socket's session and presence connection, once connection_init was accepted.
        self.session: SessionInfo | None = None
        self.presence_connection: str | None = None

    async def end_presence(self) -> None:
        """Unregisters the socket's presence connection, if it has one (idempotent)."""
        connection, self.presence_connection = self.presence_connection, None
        if connection is not None and self.viewer is not None:
            await self.services.presence.disconnected(str(self.viewer.id), connection)
            await self.services.typing.socket_closed(self.viewer)


# The root value is a ``schema.live.LiveOperation`` over a WebSocket, None over HTTP.
Info = StrawberryInfo[Context, object]
