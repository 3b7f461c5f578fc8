"""Socket caps as clients see them: refusals, and coded limit errors.

A socket over the per-address cap (``services.socket_caps``) is refused as soon as
it opens, and one over the per-user cap at connection_init: graphql-transport-ws
closes it with 4403, as strawberry closes every refused connection_init, but with a
reason naming the cap; graphql-ws sends ``connection_error`` with
``extensions.code`` RATE_LIMITED, then closes. Strawberry's own
"Subscription limit reached" error (``max_subscriptions_per_connection``) carries
no code; ``LimitCodedWebSocket`` gives it RATE_LIMITED on its way out.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected

from errors import RateLimited
from observability.metrics import REFUSED_SOCKET_CAP, REFUSED_SUBSCRIPTION_LIMIT, SOCKETS_REFUSED
from schema.context import Context

REFUSED_CODE = 4403
# A close reason is at most 123 bytes (RFC 6455, 5.5: 125 less the code).
MAX_REASON_BYTES = 123
SUBSCRIPTION_LIMIT_MESSAGE = "Subscription limit reached"
_REFUSAL_STATE = "plop_refusal_reason"


def close_reason(message: str) -> str:
    """The message, cut to what a close frame's reason holds."""
    return message.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def open_socket_slot(context: Context) -> RateLimited | None:
    """Counts a socket that just opened against its address, in ``context.socket_slot``;
    the refusal instead if the address is at its cap."""
    try:
        context.socket_slot = context.services.sockets.open(context.client_address)
    except RateLimited as exc:
        SOCKETS_REFUSED.labels(reason=REFUSED_SOCKET_CAP).inc()
        return exc
    return None


def admit_socket(context: Context, user_id: str) -> None:
    """Counts the socket against its user at connection_init; refuses it past the cap."""
    slot = context.socket_slot
    assert slot is not None, "a socket's slot is taken when it opens (open_socket_slot)"
    try:
        slot.admit(user_id)
    except RateLimited as exc:
        SOCKETS_REFUSED.labels(reason=REFUSED_SOCKET_CAP).inc()
        if isinstance(context.request, WebSocket):
            setattr(context.request.state, _REFUSAL_STATE, close_reason(exc.message))
        raise ConnectionRejectionError(
            {"message": exc.message, "extensions": {"code": exc.code}}
        ) from exc


def _with_code(message: Mapping[str, object]) -> Mapping[str, object]:
    """The frame, with a code on strawberry's subscription limit error if it is one."""
    if message.get("type") != "error":
        return message
    payload = message.get("payload")
    errors = payload if isinstance(payload, list) else [payload]
    if not any(
        isinstance(error, dict) and error.get("message") == SUBSCRIPTION_LIMIT_MESSAGE
        for error in errors
    ):
        return message
    coded = [
        {**error, "extensions": {**error.get("extensions", {}), "code": RateLimited.code}}
        if isinstance(error, dict)
        else error
        for error in errors
    ]
    return {**message, "payload": coded if isinstance(payload, list) else coded[0]}


class LimitCodedWebSocket(ASGIWebSocketAdapter):
    """Strawberry's socket adapter, with Plop's wording and codes for limits."""

    def encode_frame(self, message: Mapping[str, object]) -> str:
        """The frame's JSON text, as this adapter sends it."""
        coded = _with_code(message)
        if coded is not message:  # an operation refused over the per-socket cap
            SOCKETS_REFUSED.labels(reason=REFUSED_SUBSCRIPTION_LIMIT).inc()
        return self.view.encode_json_string(coded)

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(self.encode_frame(message))
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        if code == REFUSED_CODE:
            reason = getattr(self.ws.state, _REFUSAL_STATE, reason)
        await super().close(code, reason)
