"""``plop serve --forwarded-allow-ips``: behind a trusted proxy, X-Forwarded-For names
the client that per-address limits count; without the option, nobody's header counts."""

from __future__ import annotations

import httpx

from tests.support.clients import SIGN_UP, unique_name
from tests.support.server import ServerProcess

PASSWORD = "correct horse battery"
# One sign-up per client address per hour: the second from one address is refused.
ONE_SIGN_UP = {"PLOP_SIGN_UP_PER_ADDRESS_LIMIT": "1"}


async def sign_up_from(server: ServerProcess, forwarded_for: str) -> str | None:
    """Signs a fresh user up as a proxy would pass the request on; the error code, if any."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            server.http_url,
            json={"query": SIGN_UP, "variables": {"username": unique_name(), "password": PASSWORD}},
            headers={"X-Forwarded-For": forwarded_for},
        )
    errors = response.json().get("errors")
    return str(errors[0]["extensions"]["code"]) if errors else None


async def test_forwarded_allow_ips_option_makes_the_header_name_the_client() -> None:
    server = ServerProcess(
        f"proxy-trusted-{unique_name()}", ONE_SIGN_UP, args=("--forwarded-allow-ips", "127.0.0.1")
    )
    await server.start()
    try:
        assert await sign_up_from(server, "203.0.113.7") is None
        assert await sign_up_from(server, "203.0.113.8") is None  # another client
        assert await sign_up_from(server, "203.0.113.7") == "RATE_LIMITED"
    finally:
        await server.stop()


async def test_without_the_option_the_header_is_ignored() -> None:
    server = ServerProcess(f"proxy-untrusted-{unique_name()}", ONE_SIGN_UP)
    await server.start()
    try:
        assert await sign_up_from(server, "203.0.113.7") is None
        # Both come from loopback, whatever the header says.
        assert await sign_up_from(server, "203.0.113.8") == "RATE_LIMITED"
    finally:
        await server.stop()
