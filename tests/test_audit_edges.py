"""The edges an attacker tries: the operator's endpoints on the public port, log lines
forged through client strings, and names that hide or reorder their characters.

One server of this module's own serves /metrics and /readyz on an admin port
(PLOP_ADMIN_PORT), with its Redis behind a proxy that a test may cut.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import httpx
import psutil
import pytest
import pytest_asyncio

from tests.conftest import RUN_ID
from tests.support.clients import get, readiness_becomes
from tests.support.server import ServerProcess, free_port
from tests.support.tcp_proxy import TcpProxy, proxy_for

# What a record's line starts with in the text format: its time and level.
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def redis_proxy(real_env: dict[str, str]) -> AsyncIterator[TcpProxy]:
    """A proxy in front of the shared Redis, which a test may cut."""
    async with proxy_for(real_env["PLOP_REDIS_URL"]) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def admin_port() -> int:
    return free_port()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def edge_server(
    real_env: dict[str, str], redis_proxy: TcpProxy, admin_port: int
) -> AsyncIterator[ServerProcess]:
    """A server with an admin port, its Redis (the run's database) through the proxy."""
    database = urlsplit(real_env["PLOP_REDIS_URL"]).path
    server = ServerProcess(
        f"{RUN_ID}-edges",
        {
            **real_env,
            "PLOP_INSTANCE_ID": "edges",
            "PLOP_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}{database}",
            "PLOP_ADMIN_PORT": str(admin_port),
        },
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def admin_url(admin_port: int) -> str:
    return f"http://127.0.0.1:{admin_port}"


# ---- 9a: /metrics and /readyz ------------------------------------------------------


async def test_the_public_port_answers_neither_metrics_nor_readyz_when_an_admin_port_is_set(
    edge_server: ServerProcess, admin_url: str
) -> None:
    public, admin = edge_server.base_url, admin_url
    assert (await get(f"{public}/metrics")).status_code == 404
    assert (await get(f"{public}/readyz")).status_code == 404
    assert (await get(f"{public}/healthz")).status_code == 200

    metrics = await get(f"{admin}/metrics")
    assert metrics.status_code == 200
    assert 'plop_instance_info{instance_id="edges"} 1.0' in metrics.text
    ready = await get(f"{admin}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    # The admin port serves the operator's endpoints, not the API.
    assert (await get(f"{admin}/graphql")).status_code == 404
    assert (await get(f"{admin}/")).status_code == 404


async def test_the_admin_port_listens_on_loopback_by_default(
    edge_server: ServerProcess, admin_port: int
) -> None:
    listening = [
        connection.laddr
        for connection in psutil.Process(edge_server.pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == admin_port
    ]
    assert [address.ip for address in listening] == ["127.0.0.1"], listening


async def test_readyz_names_a_backend_that_is_down_without_its_host_or_port(
    edge_server: ServerProcess, redis_proxy: TcpProxy, admin_url: str
) -> None:
    await readiness_becomes(admin_url, 200)
    offset = edge_server.log_size()
    await redis_proxy.stop()
    try:
        down = await readiness_becomes(admin_url, 503)
    finally:
        await redis_proxy.start()
    assert down == {
        "status": "unavailable",
        "failing": ["redis"],
        "backends": {"mongo": "ok", "redis": "unavailable", "broker": "ok"},
    }
    # What went wrong (here "... connecting to 127.0.0.1:PORT") is the operator's, in the log.
    assert str(redis_proxy.port) in edge_server.log_since(offset)
    await readiness_becomes(admin_url, 200)


# ---- 9b: client strings in log lines -----------------------------------------------


async def test_a_client_string_cannot_forge_a_log_line_or_a_field(
    edge_server: ServerProcess,
) -> None:
    marker = f"FORGED-{secrets.token_hex(4)}"
    forged_start = "1999-01-01 00:00:00,000 ERROR plop.http: "
    forged_line = f"\n{forged_start}{marker} status=500"
    offset = edge_server.log_size()
    async with httpx.AsyncClient(timeout=10) as client:
        for operation_name in (f"Me{forged_line}", f"Me\u202e user_id={marker}"):
            await client.post(
                edge_server.http_url,
                json={"query": "query Me { __typename }", "operationName": operation_name},
            )
        await client.get(f"{edge_server.base_url}/{quote(forged_line)}")
    logged = edge_server.log_since(offset)
    carrying = [line for line in logged.splitlines() if marker in line]
    assert len(carrying) >= 3, logged  # both operations' request lines and the path's
    for line in carrying:
        assert not line.startswith(forged_start), f"a client's string began a line: {line!r}"
        assert RECORD_START.match(line), f"a client's string began a line: {line!r}"
        assert f"user_id={marker}" not in QUOTED.sub("", line), f"a forged field: {line!r}"
    assert "\u202e" not in logged
    assert f"\\n{forged_start}" in logged  # escaped, not dropped
