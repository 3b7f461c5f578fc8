"""The one ASGI layer in front of the app: each kind of scope takes only what it needs.

Plop's middlewares used to be six layers that every request passed through, each
handing on what was not its kind (the socket wire for sockets, the start-up failure
line for the lifespan, draining for sockets), and then FastAPI's own stack (its
error, body-limit and exception middlewares, the router's match, the route's
dependency solving) before strawberry saw a ``sendMessage``. Here:

- the lifespan goes through ``StartupFailureLine`` only;
- a WebSocket gets its wire noted, its log context, and the draining check; then
  one on ``/graphql`` goes straight to the GraphQL view with the context the route
  would have made, and anything else through FastAPI's routing;
- an HTTP request gets its log line and request id, CORS when configured, and the
  body limit; then a ``POST /graphql`` goes straight to the GraphQL view with the
  context the route would have made, and anything else through FastAPI's routing.

The straight way does what FastAPI's route did for that request: the context with
its request, sub-response and background tasks, and the background tasks after
the answer (the view answers its own refusals, ``PlopGraphQLRouter.run``). A
socket's context needs only its request: what FastAPI's route made besides (its
frames, exit stacks and dependency cache, and a sub-response and background tasks
no socket uses) lived as long as each socket. An exception either raises reaches
starlette's outermost error middleware (500, or the socket's close) as before.
"""

from __future__ import annotations

from fastapi import BackgroundTasks
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from observability.logs import RequestLog
from observability.startup import StartupFailureLine
from transport.body_size import BodySizeLimit
from transport.cors import Cors
from transport.draining import RefuseWhileDraining
from transport.router import PlopGraphQLRouter, context_for
from transport.socket_wire import keep_socket_wire

GRAPHQL_PATH = "/graphql"


class ServerEdge:
    """See the module's docstring."""

    def __init__(
        self,
        app: ASGIApp,
        graphql: PlopGraphQLRouter,
        max_bytes: int,
        unlimited_prefix: str,
        cors_origins: list[str],
    ) -> None:
        self.app = app
        self._graphql = graphql
        self._startup = StartupFailureLine(app)
        limited: ASGIApp = BodySizeLimit(self._route, max_bytes, unlimited_prefix)
        self._http = RequestLog(Cors(limited, cors_origins) if cors_origins else limited)
        self._socket = RequestLog(RefuseWhileDraining(self._socket_route))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            keep_socket_wire(scope, send)
            await self._socket(scope, receive, send)
        else:
            await self._startup(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["method"] == "POST"
            and scope["path"] == GRAPHQL_PATH
            and not scope.get("root_path")
        ):
            await self._graphql_post(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _socket_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == GRAPHQL_PATH and not scope.get("root_path"):
            websocket = WebSocket(scope, receive, send)
            context = await context_for(websocket)
            context.request = websocket
            await self._graphql.run(websocket, context, None)
        else:
            await self.app(scope, receive, send)

    async def _graphql_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        # What FastAPI hands a route that asks for a ``Response``: no status, no length.
        sub_response = Response()
        del sub_response.headers["content-length"]
        sub_response.status_code = None  # type: ignore[assignment]
        tasks = BackgroundTasks()
        context = await context_for(request)
        context.request, context.response, context.background_tasks = (
            request,
            sub_response,
            tasks,
        )
        # strawberry's FastAPI route keeps the sub-response here for the view to read.
        self._graphql.temporal_response = sub_response  # type: ignore[attr-defined]
        response = await self._graphql.run(request, context, None)
        if response.background is None:
            response.background = tasks
        await response(scope, receive, send)
