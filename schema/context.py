"""The per-request (or per-socket) context every resolver receives."""

from __future__ import annotations

from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

from auth.sessions import SessionInfo
from models import UserDoc
from schema.loaders import Loaders
from services import Services
from services.socket_caps import SocketSlot

# The address of a context the server makes for itself (a shared feed's rendering).
NO_CLIENT = "server"


class Context(BaseContext):
    """Services, the caller's token, and the viewer once a resolver resolved it."""

    def __init__(
        self,
        services: Services,
        token: str | None,
        over_websocket: bool,
        client_address: str = NO_CLIENT,
        user_agent: str | None = None,
    ) -> None:
        super().__init__()
        self.services = services
        self.token = token
        # Where the request or socket comes from (transport/client_address.py).
        self.client_address = client_address
        # The client's User-Agent header (a socket's, from its upgrade request): what
        # the sessions it makes are listed with.
        self.user_agent = user_agent
        # A socket lives for hours: its token is checked again for every operation,
        # so that logOut ends what it may start at once.
        self.over_websocket = over_websocket
        self.viewer: UserDoc | None = None
        # The socket's session and presence connection, once connection_init was accepted.
        self.session: SessionInfo | None = None
        self.presence_connection: str | None = None
        # The socket's place under the per-user and per-address caps, once accepted.
        self.socket_slot: SocketSlot | None = None
        self._loaders: Loaders | None = None

    @property
    def loaders(self) -> Loaders:
        """The context's DataLoaders, made when a field first needs them."""
        if self._loaders is None:
            self._loaders = Loaders(self.services)
        return self._loaders

    async def end_presence(self) -> None:
        """Unregisters the socket's presence connection, if it has one (idempotent)."""
        connection, self.presence_connection = self.presence_connection, None
        if connection is not None and self.viewer is not None:
            await self.services.presence.disconnected(str(self.viewer.id), connection)
            await self.services.typing.socket_closed(self.viewer)

    def release_socket(self) -> None:
        """Gives the socket's place under the caps back (idempotent)."""
        if self.socket_slot is not None:
            self.socket_slot.release()


# The root value is a ``schema.live.LiveOperation`` over a WebSocket, None over HTTP.
Info = StrawberryInfo[Context, object]
