"""The GraphQL endpoint: HTTP and both WebSocket subprotocols, authenticated."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import overload

import orjson
import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from errors import PlopError, Unauthenticated
from observability.metrics import REFUSED_BAD_TOKEN, REFUSED_UNAVAILABLE, SOCKETS_REFUSED
from schema.context import Context
from schema.errors import plop_error_for
from services import Services
from settings import Settings
from transport import http_spec
from transport.client_address import client_address
from transport.handlers import LegacyWSHandler, LiveTransport, SocketContext, TransportWSHandler
from transport.persisted_requests import resolved_http_request
from transport.socket_limits import LimitCodedWebSocket, admit_socket
from web import graphiql_response

logger = logging.getLogger(__name__)


def bearer_token(value: object) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, if it is one."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_from_connection_params(params: object) -> str | None:
    """The token of a connection_init payload: ``authToken``, or an Authorization header."""
    if not isinstance(params, dict):
        return None
    token = params.get("authToken")
    if isinstance(token, str) and token:
        return token
    headers = params.get("headers")
    for source in (params, headers if isinstance(headers, dict) else {}):
        for key in ("Authorization", "authorization"):
            if (found := bearer_token(source.get(key))) is not None:
                return found
    return None


async def context_for(connection: HTTPConnection) -> Context:
    """The context of one HTTP request, or of one socket for its whole life."""
    services: Services = connection.app.state.services
    settings = services.settings
    address = client_address(connection, settings.forwarded_allow_ips, settings.ipv6_prefix_length)
    user_agent = connection.headers.get("user-agent")
    if connection.scope["type"] == "websocket":
        live: LiveTransport = connection.app.state.live
        return SocketContext(services, live, address, user_agent)
    token = bearer_token(connection.headers.get("authorization"))
    return Context(services, token, False, address, user_agent)


class PlopGraphQLRouter(GraphQLRouter[Context, None]):
    """Strawberry's router with Plop's socket handlers and connection_init auth."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = LimitCodedWebSocket

    def decode_json(self, data: str | bytes) -> object:
        """JSON of a body or a socket message; nesting too deep for the parser is
        malformed JSON (400 over HTTP, 4400 on a socket), not a server error.

        orjson reads what it can, several times faster; what it refuses (a lone
        surrogate's escape, NaN, nesting past 1,024, or JSON that is not) the
        standard parser reads, so those answers stay the ones it gives: a variable
        with a lone surrogate is still refused as not text (``schema.execution``),
        not as malformed JSON. orjson reads an integer past 64 bits as a float; where
        an Int is due, either is refused as out of range.
        """
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(data)
        except RecursionError as exc:
            text = data.decode(errors="replace") if isinstance(data, bytes) else data
            raise json.JSONDecodeError("nested too deeply", text[:100], 0) from exc

    def encode_json(self, data: object) -> bytes:
        """An HTTP answer's JSON: orjson's UTF-8, or the standard encoder's for what
        orjson refuses (an integer past 64 bits, a lone surrogate)."""
        try:
            return orjson.dumps(data)
        except TypeError:
            return json.dumps(data, separators=(",", ":")).encode()

    def encode_json_string(self, data: object) -> str:
        """A socket frame's JSON, as it always was: ASCII, non-ASCII escaped."""
        return json.dumps(data, separators=(",", ":"))

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """GraphiQL for a browser's GET, but not for a GET that names its document by
        hash and has no ``query`` (Apollo's link sends it with ``Accept: */*``)."""
        params = request.query_params
        if params.get("extensions") is not None or params.get("documentId") is not None:
            return False
        return super().should_render_graphql_ide(request)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """Plop's own GraphiQL page: every file it loads comes from this server."""
        return graphiql_response()

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Refuses a socket whose connection_init carries no valid session token, or
        that is over its user's cap; the context takes the viewer only once accepted."""
        token = token_from_connection_params(context.connection_params)
        try:
            viewer, session = await context.services.accounts.open_session(token)
        except Exception as exc:
            error = plop_error_for(exc)
            if error is None:
                logger.exception("connection_init failed")
                error = PlopError("Internal server error")
            reason = (
                REFUSED_BAD_TOKEN if isinstance(error, Unauthenticated) else REFUSED_UNAVAILABLE
            )
            SOCKETS_REFUSED.labels(reason=reason).inc()
            raise ConnectionRejectionError(
                {"message": error.message, "extensions": {"code": error.code}}
            ) from exc
        admit_socket(context, str(viewer.id))
        context.token, context.viewer, context.session = token, viewer, session
        try:
            context.presence_connection = await context.services.presence.connected(str(viewer.id))
        except Exception:
            # Presence is best effort: a Redis hiccup must not refuse the socket.
            logger.exception("presence registration failed")
        return {"userId": str(viewer.id)}

    @overload
    async def run(
        self, request: Request, context: Context = ..., root_value: None = ...
    ) -> Response: ...

    @overload
    async def run(
        self, request: WebSocket, context: Context = ..., root_value: None = ...
    ) -> WebSocket: ...

    async def run(
        self,
        request: Request | WebSocket,
        context: Context = UNSET,
        root_value: None = UNSET,
    ) -> Response | WebSocket:
        """Strawberry's request handling, with GraphQL-over-HTTP media types and statuses."""
        if isinstance(request, WebSocket):
            return await super().run(request, context, root_value)
        try:
            response = await super().run(request, context, root_value)
        except HTTPException as refused:
            return http_spec.refusal(request, refused)
        return http_spec.finish(request, response)

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Response,
    ) -> ExecutionResult | list[ExecutionResult] | SubscriptionExecutionResult:
        """Strawberry's execution, of the document the request names by its hash if it
        does (``transport.persisted_requests``); a refusal runs nothing."""
        if isinstance(request_data, list):
            # Batching is off and strawberry refuses a list before this; were it turned
            # on, a list would pass by the trusted documents' check, so never run one.
            raise HTTPException(400, "Batching is not enabled")
        resolved = await resolved_http_request(request, request_data, context)
        if isinstance(resolved, ExecutionResult):
            return resolved
        return await super().execute_operation(
            request=request,
            request_adapter=request_adapter,
            request_data=resolved,
            context=context,
            root_value=root_value,
            sub_response=sub_response,
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        body = await super().process_result(request, result)
        http_spec.note_result(request, result, body)
        return body


def graphql_router(schema: strawberry.Schema, settings: Settings) -> PlopGraphQLRouter:
    return PlopGraphQLRouter(
        schema,
        context_getter=context_for,
        connection_init_wait_timeout=timedelta(seconds=settings.connection_init_timeout_seconds),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        graphql_ide="graphiql" if settings.graphiql else None,
        allowed_origins=settings.cors_origins,
    )
