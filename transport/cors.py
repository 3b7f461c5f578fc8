"""CORS for browser pages on other origins (``PLOP_CORS_ORIGINS``).

A preflight ``OPTIONS`` from an allowed origin is answered with the methods and
headers a GraphQL client sends, and an allowed origin's requests carry
``Access-Control-Allow-Origin``. Any other origin gets no CORS header at all (its
preflight a 403), so its browser refuses the answer. ``*`` allows any origin but
never with credentials: a page anywhere must not act with a user's cookies.
Plop's own auth is a bearer token, which needs no credentials mode, only the
``Authorization`` header.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "X-Request-ID")
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_SECONDS = 600
ANY_ORIGIN = "*"


class Cors:
    """Adds CORS headers for the allowed origins and answers their preflights."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.any_origin = ANY_ORIGIN in origins
        self.origins = frozenset(origins)

    def _allow_origin(self, origin: str) -> dict[str, str]:
        """The headers that let a page on ``origin`` read the answer; none if it may not."""
        if self.any_origin:
            return {"access-control-allow-origin": ANY_ORIGIN}
        if origin in self.origins:
            return {
                "access-control-allow-origin": origin,
                "access-control-allow-credentials": "true",
                "vary": "Origin",
            }
        return {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self._allow_origin(origin)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(allowed)(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in allowed.items():
                    if name == "vary":
                        response_headers.add_vary_header(value)
                    else:
                        response_headers[name] = value
                if not allowed and not self.any_origin:
                    response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, allowed: dict[str, str]) -> PlainTextResponse:
        if not allowed:
            return PlainTextResponse(
                "origin not allowed", status_code=403, headers={"vary": "Origin"}
            )
        return PlainTextResponse(
            "OK",
            headers={
                **allowed,
                "access-control-allow-methods": ", ".join(ALLOWED_METHODS),
                "access-control-allow-headers": ", ".join(ALLOWED_HEADERS),
                "access-control-max-age": str(PREFLIGHT_MAX_AGE_SECONDS),
            },
        )
