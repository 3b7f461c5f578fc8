"""The GraphQL endpoint: HTTP and both WebSocket subprotocols, authenticated."""

from __future__ import annotations

import logging
from datetime import timedelta

import strawberry
from starlette.requests import HTTPConnection
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.types.unset import UnsetType

from errors import PlopError
from schema.context import Context
from schema.errors import plop_error_for
from services import Services
from settings import Settings
from transport.client_address import client_address
from transport.handlers import LegacyWSHandler, TransportWSHandler
from transport.socket_limits import LimitCodedWebSocket, take_socket_slot

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
    over_websocket = connection.scope["type"] == "websocket"
    token = None if over_websocket else bearer_token(connection.headers.get("authorization"))
    address = client_address(connection, services.settings.forwarded_allow_ips)
    return Context(services, token, over_websocket, address)


class PlopGraphQLRouter(GraphQLRouter[Context, None]):
    """Strawberry's router with Plop's socket handlers and connection_init auth."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = LimitCodedWebSocket

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Refuses a socket whose connection_init carries no valid session token."""
        context.token = token_from_connection_params(context.connection_params)
        try:
            context.viewer = await context.services.accounts.user_for_token(context.token)
        except Exception as exc:
            error = plop_error_for(exc)
            if error is None:
                logger.exception("connection_init failed")
                error = PlopError("Internal server error")
            raise ConnectionRejectionError(
                {"message": error.message, "extensions": {"code": error.code}}
            ) from exc
        context.socket_slot = take_socket_slot(context)
        try:
            context.presence_connection = await context.services.presence.connected(
                str(context.viewer.id)
            )
        except Exception:
            # Presence is best effort: a Redis hiccup must not refuse the socket.
            logger.exception("presence registration failed")
        return {"userId": str(context.viewer.id)}


def graphql_router(schema: strawberry.Schema, settings: Settings) -> PlopGraphQLRouter:
    return PlopGraphQLRouter(
        schema,
        context_getter=context_for,
        connection_init_wait_timeout=timedelta(seconds=settings.connection_init_timeout_seconds),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        graphql_ide="graphiql",
    )
