"""The operator's endpoints, ``/metrics``, ``/readyz`` and ``/healthz``, and the port
that serves them.

Without ``PLOP_ADMIN_PORT`` all three are served on the public port, beside the API.
With it, ``plop serve`` listens on a second socket (``PLOP_ADMIN_HOST``, loopback by
default) and ``AdminPort`` tells the two apart by the local port a connection came in
on, which a client cannot choose (unlike a Host header): the admin socket answers
``/metrics``, ``/readyz`` and ``/healthz`` and nothing else; the public socket answers
everything but ``/metrics`` and ``/readyz`` (404), so that neither the metrics nor the
state of the backends is told to whoever reaches the API.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from observability.health import add_health

ADMIN_ONLY_PATHS = frozenset({"/metrics", "/readyz"})
# Liveness tells nothing about the deployment; load balancers of the public port ask it.
BOTH_PORTS_PATHS = frozenset({"/healthz"})


class AdminPort:
    """Serves the admin paths on the admin port only, and nothing else there."""

    def __init__(self, app: ASGIApp, admin_port: int) -> None:
        self.app = app
        self.admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        local = scope.get("server")  # the listening socket's own address
        on_admin_port = local is not None and local[1] == self.admin_port
        path = scope["path"]
        if on_admin_port:
            allowed = path in ADMIN_ONLY_PATHS or path in BOTH_PORTS_PATHS
        else:
            allowed = path not in ADMIN_ONLY_PATHS
        if allowed:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await WebSocketClose()(scope, receive, send)
        else:
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)


def add_operator_endpoints(app: FastAPI, admin_port: int | None) -> None:
    """Serves ``/metrics`` and the health endpoints, on the admin port when there is one."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    add_health(app)
    if admin_port is not None:
        app.add_middleware(AdminPort, admin_port=admin_port)
