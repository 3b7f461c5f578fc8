"""/healthz and /readyz: the process serves; every backend answers, or which does not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest_asyncio

from main import create_app
from observability.health import start_draining
from settings import Settings
from tests.conftest import RUN_ID
from tests.support.server import ServerProcess
from tests.support.tcp_proxy import TcpProxy

# A dropped backend is seen by the next probe; a restored one by the next connect.
STATE_CHANGE_TIMEOUT_SECONDS = 10.0


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url)


async def readiness_becomes(server: ServerProcess, status_code: int) -> dict[str, Any]:
    """Probes /readyz until it answers ``status_code``; returns that answer's body."""
    async with asyncio.timeout(STATE_CHANGE_TIMEOUT_SECONDS):
        while True:
            response = await get(f"{server.base_url}/readyz")
            if response.status_code == status_code:
                body: dict[str, Any] = response.json()
                return body
            # Another process: there is no event to await for its backends' state.
            await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="session")
async def redis_proxy(real_env: dict[str, str]) -> AsyncIterator[TcpProxy]:
    """A proxy in front of the shared Redis, which the test may cut."""
    target = urlsplit(real_env["PLOP_REDIS_URL"])
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_healthz_says_the_process_serves(any_server: ServerProcess) -> None:
    response = await get(f"{any_server.base_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_each_backend_ready(any_server: ServerProcess) -> None:
    response = await get(f"{any_server.base_url}/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "backends": {"mongo": "ok", "redis": "ok", "broker": "ok"},
    }


async def test_readyz_names_redis_while_it_is_unreachable_and_recovers(
    real_env: dict[str, str], redis_proxy: TcpProxy
) -> None:
    server = ServerProcess(
        f"{RUN_ID}-redis-proxy",
        {
            **real_env,
            "PLOP_INSTANCE_ID": "redis-proxy",
            "PLOP_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/0",
        },
    )
    await server.start()
    try:
        assert (await readiness_becomes(server, 200))["backends"]["redis"] == "ok"

        await redis_proxy.stop()
        down = await readiness_becomes(server, 503)
        assert down["status"] == "unavailable"
        assert down["failing"] == ["redis"]
        assert down["backends"]["mongo"] == down["backends"]["broker"] == "ok"
        assert down["backends"]["redis"] != "ok"
        assert (await get(f"{server.base_url}/healthz")).status_code == 200

        await redis_proxy.start()
        up = await readiness_becomes(server, 200)
        assert up["backends"] == {"mongo": "ok", "redis": "ok", "broker": "ok"}
    finally:
        await server.stop()


async def test_draining_turns_readiness_off_but_not_liveness() -> None:
    app = create_app(Settings(mongo_url="memory://", broker_url="memory://", redis_url="memory://"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://plop") as client,
    ):
        assert (await client.get("/readyz")).status_code == 200
        start_draining(app.state)
        draining = await client.get("/readyz")
        assert draining.status_code == 503
        assert draining.json() == {"status": "draining"}
        assert (await client.get("/healthz")).status_code == 200
