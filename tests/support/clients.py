"""gql clients as users drive Plop: HTTP, and WebSocket on both subprotocols."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.support.server import ServerProcess

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
SUBPROTOCOLS = (TRANSPORT_WS, LEGACY_WS)
EVENT_TIMEOUT_SECONDS = 20.0

SIGN_UP = """
mutation SignUp($username: String!, $password: String!, $displayName: String) {
  signUp(username: $username, password: $password, displayName: $displayName) {
    token user { id username displayName }
  }
}
"""


def unique_name(prefix: str = "u") -> str:
    """A fresh username, so that tests never share users."""
    return f"{prefix}_{secrets.token_hex(5)}"


@asynccontextmanager
async def http_session(server: ServerProcess, token: str | None = None) -> AsyncIterator[Any]:
    """A gql session over HTTP, with a bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    transport = HTTPXAsyncTransport(url=server.http_url, headers=headers, timeout=30)
    async with Client(transport=transport, execute_timeout=60) as session:
        yield session


@asynccontextmanager
async def ws_session(
    server: ServerProcess,
    subprotocol: str,
    token: str | None = None,
    init_payload: dict[str, Any] | None = None,
) -> AsyncIterator[Any]:
    """A gql session over WebSocket; the token goes in connection_init as authToken."""
    payload = init_payload if init_payload is not None else ({"authToken": token} if token else {})
    transport = WebsocketsTransport(
        url=server.ws_url,
        init_payload=payload,
        subprotocols=[subprotocol],
        connect_timeout=10,
        ack_timeout=15,
        close_timeout=5,
    )
    async with Client(transport=transport, execute_timeout=60) as session:
        yield session


async def call(session: Any, query: str, **variables: Any) -> dict[str, Any]:
    """Executes one operation; raises TransportQueryError on GraphQL errors."""
    result: dict[str, Any] = await session.execute(
        GraphQLRequest(query, variable_values=variables or None)
    )
    return result


async def error_code(session: Any, query: str, **variables: Any) -> str:
    """The extensions.code of the error the operation must fail with."""
    try:
        await call(session, query, **variables)
    except TransportQueryError as exc:
        assert exc.errors, f"no errors in {exc!r}"
        code: str = exc.errors[0]["extensions"]["code"]
        return code
    raise AssertionError(f"expected an error from {query.strip()[:60]!r}")


@dataclass
class Account:
    token: str
    id: str
    username: str
    display_name: str


async def sign_up(
    server: ServerProcess, prefix: str = "u", display_name: str | None = None
) -> Account:
    """A fresh user on the server."""
    async with http_session(server) as session:
        data = await call(
            session,
            SIGN_UP,
            username=unique_name(prefix),
            password="correct horse battery",
            displayName=display_name,
        )
    user = data["signUp"]["user"]
    return Account(data["signUp"]["token"], user["id"], user["username"], user["displayName"])


async def metric(server: ServerProcess, name: str) -> float:
    """One unlabelled sample of the server's /metrics; 0 if it has none yet."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{server.base_url}/metrics")).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def active_subscriptions(server: ServerProcess) -> int:
    return int(await metric(server, "plop_subscriptions_active"))


async def wait_active_subscriptions(server: ServerProcess, at_least: int) -> None:
    """Waits until the server streams at least this many subscriptions (bounded)."""
    async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
        # Polls another process's /metrics: there is no event to await across processes.
        while await active_subscriptions(server) < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


class Subscription:
    """A live subscription whose results are collected in the background."""

    def __init__(self, session: Any, query: str, variables: dict[str, Any]) -> None:
        self.results: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(session, query, variables))

    async def _run(self, session: Any, query: str, variables: dict[str, Any]) -> None:
        try:
            async for result in session.subscribe(
                GraphQLRequest(query, variable_values=variables or None)
            ):
                self.results.put_nowait(result)
        except BaseException as exc:
            self.results.put_nowait(exc)
            raise

    async def next(self, within: float = EVENT_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The next result; raises what the subscription raised, or TimeoutError."""
        async with asyncio.timeout(within):
            item = await self.results.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def take(self, count: int, within: float = EVENT_TIMEOUT_SECONDS) -> list[dict[str, Any]]:
        """The next ``count`` results, within one overall deadline."""
        async with asyncio.timeout(within):
            return [await self.next(within) for _ in range(count)]

    def assert_idle(self) -> None:
        """Nothing more has arrived (checked after the events that matter were awaited)."""
        assert self.results.empty(), f"unexpected extra result: {self.results.get_nowait()!r}"

    async def cancel(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def subscribed(
    server: ServerProcess, session: Any, query: str, **variables: Any
) -> AsyncIterator[Subscription]:
    """A subscription that is registered on the server when the block starts.

    Live-only subscriptions (roomAdded, roomUpdated) have no replay, so a test must
    not trigger their events before the server registered them: this waits on the
    server's own count of active subscriptions, and on exit waits for the count to
    drop again so that the next test starts from a settled count.
    """
    before = await active_subscriptions(server)
    subscription = Subscription(session, query, variables)
    try:
        await wait_active_subscriptions(server, before + 1)
        yield subscription
    finally:
        await subscription.cancel()
        if server.running:  # a killed server has nothing left to settle
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                while await active_subscriptions(server) > before:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)


# A dropped backend is seen by the next probe; a restored one by the next connect.
STATE_CHANGE_TIMEOUT_SECONDS = 10.0


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url)


async def readiness_becomes(base_url: str, status_code: int) -> dict[str, Any]:
    """Probes ``base_url``/readyz until it answers ``status_code``; returns that body."""
    async with asyncio.timeout(STATE_CHANGE_TIMEOUT_SECONDS):
        while True:
            response = await get(f"{base_url}/readyz")
            if response.status_code == status_code:
                body: dict[str, Any] = response.json()
                return body
            # Another process: there is no event to await for its backends' state.
            await asyncio.sleep(0.2)
