"""A start-up that fails for a reason Plop can name ends in one log line.

An unreachable backend or unusable settings (``ConfigError``, which includes
``BackendUnreachable``) is logged as one error line, and uvicorn is told that
start-up failed without the traceback it would print otherwise; the process
exits non-zero. Any other failure keeps its traceback: it is a bug.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from errors import ConfigError

logger = logging.getLogger("plop.startup")


def _explained(exc: BaseException) -> ConfigError | None:
    """The ConfigError behind a failure, also from inside an exception group."""
    if isinstance(exc, ConfigError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _explained(inner)) is not None:
                return found
    return None


class StartupFailureLine:
    """ASGI middleware for the lifespan: see the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        failed: list[Message] = []

        async def hold_startup_failure(message: Message) -> None:
            # Starlette reports the failure, then raises it: hold the report until
            # the exception says whether its traceback is worth sending.
            if message["type"] == "lifespan.startup.failed":
                failed.append(message)
                return
            await send(message)

        try:
            await self.app(scope, receive, hold_startup_failure)
        except BaseException as exc:
            if failed:
                message = failed[0]
                if (explained := _explained(exc)) is not None:
                    logger.error("cannot start: %s", explained)
                    message = {**message, "message": ""}
                await send(message)
            raise
        for message in failed:
            await send(message)
