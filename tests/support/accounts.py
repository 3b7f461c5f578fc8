"""Documents and helpers for the viewer's own account: sessions, password, deletion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gql import Client
from gql.transport.httpx import HTTPXAsyncTransport

from tests.support.clients import Account, call
from tests.support.server import ServerProcess

PASSWORD = "correct horse battery"  # what tests.support.clients.sign_up sets
SESSIONS = "{ sessions { id createdAt lastSeenAt current userAgent } }"
END_SESSION = "mutation($s: ID!) { endSession(sessionId: $s) }"
CHANGE_PASSWORD = (
    "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }"
)
DELETE_ACCOUNT = "mutation($p: String!) { deleteAccount(password: $p) }"
LOG_IN = (
    "mutation($u: String!, $p: String!) { logIn(username: $u, password: $p) "
    "{ token user { id username displayName } } }"
)
SIGN_UP = "mutation($u: String!, $p: String!) { signUp(username: $u, password: $p) { token } }"


@asynccontextmanager
async def client(
    server: ServerProcess, token: str | None = None, user_agent: str | None = None
) -> AsyncIterator[Any]:
    """A gql session over HTTP, with a bearer token and a User-Agent if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if user_agent is not None:
        headers["User-Agent"] = user_agent
    transport = HTTPXAsyncTransport(url=server.http_url, headers=headers, timeout=30)
    async with Client(transport=transport, execute_timeout=60) as session:
        yield session


async def log_in(
    server: ServerProcess,
    account: Account,
    password: str = PASSWORD,
    user_agent: str | None = None,
) -> Account:
    """Another session of the account (logIn), as its own ``Account``."""
    async with client(server, user_agent=user_agent) as session:
        data = await call(session, LOG_IN, u=account.username, p=password)
    return Account(data["logIn"]["token"], account.id, account.username, account.display_name)


async def sessions(server: ServerProcess, account: Account) -> list[dict[str, Any]]:
    async with client(server, account.token) as session:
        listed: list[dict[str, Any]] = (await call(session, SESSIONS))["sessions"]
    return listed


async def current_session_id(server: ServerProcess, account: Account) -> str:
    """The id the account's own session is listed under."""
    found = [each["id"] for each in await sessions(server, account) if each["current"]]
    assert len(found) == 1, found
    session_id: str = found[0]
    return session_id
