"""/healthz and /readyz: the process serves; every backend answers, or which does not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from main import create_app
from observability.health import start_draining
from settings import Settings
from tests.conftest import RUN_ID
from tests.support.clients import get, readiness_becomes
from tests.support.server import ServerProcess
from tests.support.tcp_proxy import TcpProxy, proxy_for


@pytest_asyncio.fixture(loop_scope="session")
async def redis_proxy(real_env: dict[str, str]) -> AsyncIterator[TcpProxy]:
    """A proxy in front of the shared Redis, which the test may cut."""
    async with proxy_for(real_env["PLOP_REDIS_URL"]) as proxy:
        yield proxy


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
        assert (await readiness_becomes(server.base_url, 200))["backends"]["redis"] == "ok"

        await redis_proxy.stop()
        down = await readiness_becomes(server.base_url, 503)
        assert down["status"] == "unavailable"
        assert down["failing"] == ["redis"]
        assert down["backends"]["mongo"] == down["backends"]["broker"] == "ok"
        assert down["backends"]["redis"] != "ok"
        assert (await get(f"{server.base_url}/healthz")).status_code == 200

        await redis_proxy.start()
        up = await readiness_becomes(server.base_url, 200)
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
