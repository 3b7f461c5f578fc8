"""Liveness and readiness: ``/healthz`` says the process serves, ``/readyz`` that
every backend answers.

``/readyz`` asks MongoDB, Redis and the broker at once, each bounded by
``READY_TIMEOUT_SECONDS``: 200 with each one's state when all answer, 503 naming
those that did not, by name only ("mongo", "redis", "broker"): what went wrong can
carry a host, a port or a URL, so it goes to the log, never into the answer. A
process that is stopping sets ``app.state.draining`` (``start_draining``):
``/readyz`` then answers 503 ``draining`` so that a load balancer sends it nothing
new while it finishes what it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from fastapi import APIRouter, FastAPI
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse

from backends.mongo import ping_database
from errors import describe

# A backend slower than this to answer a ping counts as down: a readiness probe
# must answer well within its own timeout (docker's is 3 s).
READY_TIMEOUT_SECONDS = 1.0
OK = "ok"
DOWN = "unavailable"

logger = logging.getLogger(__name__)


class Pingable(Protocol):
    """A backend client that can be asked whether it answers."""

    def ping(self) -> Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class Backends:
    """The open backend clients a readiness probe asks (``app.state.backends``)."""

    redis: Pingable
    broker: Pingable


def start_draining(state: State) -> None:
    """From now on ``/readyz`` answers 503 ``draining``; ``/healthz`` is unchanged."""
    state.draining = True


async def _state_of(ping: Callable[[], Awaitable[object]]) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await ping()
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    except Exception as exc:
        return describe(exc)
    return OK


async def backend_states(backends: Backends) -> dict[str, str]:
    """Each backend's state, ``ok`` or what went wrong, all asked at once."""
    pings: dict[str, Callable[[], Awaitable[object]]] = {
        "mongo": ping_database,
        "redis": backends.redis.ping,
        "broker": backends.broker.ping,
    }
    states = await asyncio.gather(*(_state_of(ping) for ping in pings.values()))
    return dict(zip(pings, states, strict=True))


def health_router() -> APIRouter:
    """``/healthz`` and ``/readyz``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        state = request.app.state
        if getattr(state, "draining", False):
            return JSONResponse({"status": "draining"}, status_code=503)
        running: Backends | None = getattr(state, "backends", None)
        if running is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        states = await backend_states(running)
        failing = sorted(name for name, value in states.items() if value != OK)
        if failing:
            for name in failing:
                logger.warning("backend not ready", extra={"backend": name, "error": states[name]})
            shown = {name: OK if value == OK else DOWN for name, value in states.items()}
            body = {"status": "unavailable", "failing": failing, "backends": shown}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "backends": states})

    return router


def add_health(app: FastAPI) -> None:
    """Serves the health endpoints; the app is not draining until told so."""
    app.state.draining = False
    app.include_router(health_router())
