"""The per-request (or per-socket) context every resolver receives."""

from __future__ import annotations

from strawberry.fastapi import BaseContext
from strawberry.types import Info as StrawberryInfo

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


Info = StrawberryInfo[Context, None]
