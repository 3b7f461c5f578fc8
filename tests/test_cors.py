"""CORS (PLOP_CORS_ORIGINS): allowed origins get the headers, others do not, and
``*`` never comes with credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import websockets
from pydantic import ValidationError
from websockets.exceptions import InvalidStatus

from settings import Settings
from tests.conftest import RUN_ID
from tests.support.clients import TRANSPORT_WS
from tests.support.server import ServerProcess

ALLOWED = "https://app.example"
OTHER = "https://elsewhere.example"
PREFLIGHT_HEADERS = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def listed_server() -> AsyncIterator[ServerProcess]:
    """The embedded server, allowing two origins (comma-separated)."""
    server = ServerProcess(
        f"{RUN_ID}-cors-listed", {"PLOP_CORS_ORIGINS": f"{ALLOWED}, https://admin.example"}
    )
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def any_origin_server() -> AsyncIterator[ServerProcess]:
    """The embedded server, allowing every origin (a JSON list)."""
    server = ServerProcess(f"{RUN_ID}-cors-any", {"PLOP_CORS_ORIGINS": '["*"]'})
    await server.start()
    yield server
    await server.stop()


async def preflight(server: ServerProcess, origin: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.options(
            server.http_url, headers={"origin": origin, **PREFLIGHT_HEADERS}
        )


async def post_from(server: ServerProcess, origin: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(
            server.http_url,
            json={"query": "{ __typename }"},
            headers={"origin": origin, **headers},
        )


async def test_preflight_from_an_allowed_origin_is_answered(listed_server: ServerProcess) -> None:
    response = await preflight(listed_server, ALLOWED)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers


async def test_a_request_from_an_allowed_origin_gets_the_headers(
    listed_server: ServerProcess,
) -> None:
    response = await post_from(listed_server, ALLOWED)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_another_origin_gets_no_cors_headers(listed_server: ServerProcess) -> None:
    refused = await preflight(listed_server, OTHER)
    assert refused.status_code >= 400
    assert "access-control-allow-origin" not in refused.headers
    response = await post_from(listed_server, OTHER)
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_any_origin_gets_a_star_and_never_credentials(
    any_origin_server: ServerProcess,
) -> None:
    answered = await preflight(any_origin_server, OTHER)
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answered.headers
    response = await post_from(any_origin_server, OTHER, cookie="session=1")
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_without_origins_a_preflight_is_not_answered(
    embedded_server: ServerProcess,
) -> None:
    response = await preflight(embedded_server, ALLOWED)
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(("origin", "accepted"), [(ALLOWED, True), (OTHER, False)])
async def test_websocket_handshakes_follow_the_same_origins(
    listed_server: ServerProcess, origin: str, accepted: bool
) -> None:
    connecting = websockets.connect(
        listed_server.ws_url,
        subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        origin=origin,  # type: ignore[arg-type]
    )
    if accepted:
        async with connecting as socket:
            assert socket.subprotocol == TRANSPORT_WS
    else:
        with pytest.raises(InvalidStatus) as refused:
            async with connecting:
                pass
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("", []),
        (
            "https://a.example, http://B.example:8080/",
            ["https://a.example", "http://b.example:8080"],
        ),
        ('["https://a.example:443", "*"]', ["https://a.example", "*"]),
    ],
)
def test_cors_origins_are_read_from_a_comma_separated_or_json_list(
    value: str, origins: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLOP_CORS_ORIGINS", value)
    assert Settings().cors_origins == origins


def test_a_cors_origin_with_a_path_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLOP_CORS_ORIGINS", "https://a.example/app")
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings()
