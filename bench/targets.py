"""What the scenarios drive: Plop's GraphQL API, or the raw baseline, behind one interface.

A target knows its URLs, how to send a message and read its seq from the answer, how
many subscriptions its server holds, and how to set up users and rooms (Plop signs
users up through the API; the baseline needs neither).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import httpx

from bench.rawhttp import HttpConnection, HttpError
from bench.server import HOST, ServerGroup

SIGN_UP = (
    "mutation SignUp($username: String!, $password: String!) "
    "{ signUp(username: $username, password: $password) { token user { id } } }"
)
CREATE_GROUP = (
    "mutation Group($title: String!, $memberIds: [ID!]!) "
    "{ createGroupRoom(title: $title, memberIds: $memberIds) { id } }"
)
ROOM_INVITATIONS = "query Invitations { roomInvitations { id } }"
ACCEPT_INVITATION = (
    "mutation Accept($id: ID!) { respondToRoomInvitation(invitationId: $id, accept: true) { id } }"
)
SEND_MESSAGE = (
    "mutation Send($roomId: ID!, $text: String!, $clientId: String) "
    "{ sendMessage(roomId: $roomId, text: $text, clientId: $clientId) { id seq } }"
)
MESSAGE_ADDED = (
    "subscription Bench($roomId: ID!, $afterSeq: Int) "
    "{ messageAdded(roomId: $roomId, afterSeq: $afterSeq) "
    "{ id roomId seq text clientId createdAt sender { id username } } }"
)
PASSWORD = "bench password 1234"
SIGN_UP_CONCURRENCY = 4
SETTLE_TIMEOUT_SECONDS = 120.0
_ACTIVE = re.compile(r"^plop_subscriptions_active (\S+)$", re.MULTILINE)

Kind = Literal["plop", "baseline", "centrifugo"]
WireProtocol = Literal["graphql-transport-ws", "centrifugo-json"]
GRAPHQL_TRANSPORT_WS: Final = "graphql-transport-ws"
CENTRIFUGO_JSON: Final = "centrifugo-json"


@dataclass(frozen=True)
class Account:
    token: str
    id: str


@dataclass(frozen=True)
class Population:
    """The users and rooms of a run: subscriber i is accounts[i % U] in rooms[i % R]."""

    accounts: list[Account]
    rooms: list[str]

    def account_of(self, index: int) -> Account:
        return self.accounts[index % len(self.accounts)]

    def room_of(self, index: int) -> str:
        return self.rooms[index % len(self.rooms)]


class SendFailed(Exception):
    """A send the server refused or answered with GraphQL errors; ``codes`` are the
    errors' ``extensions.code`` (``UNAVAILABLE``, ...), empty for a transport failure."""

    def __init__(self, text: str, codes: tuple[str, ...] = ()) -> None:
        super().__init__(text)
        self.codes = codes


def error_codes(errors: object) -> tuple[str, ...]:
    """The ``extensions.code`` of each GraphQL error of an answer (``?`` if it has none)."""
    if not isinstance(errors, list):
        return ()
    codes = []
    for error in errors:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        code = extensions.get("code") if isinstance(extensions, dict) else None
        codes.append(code if isinstance(code, str) else "?")
    return tuple(codes)


@dataclass
class Target:
    """A server to drive; of several instances, sockets and connections take turns."""

    kind: Kind
    label: str
    server: ServerGroup
    _turn: int = field(default=0, init=False, repr=False)

    @property
    def protocol(self) -> WireProtocol:
        """What the load speaks on the target's sockets."""
        return GRAPHQL_TRANSPORT_WS

    @property
    def ws_url(self) -> str:
        return self.ws_urls[0]

    @property
    def ws_urls(self) -> list[str]:
        """Every instance's WebSocket URL: the load spreads its sockets over them."""
        path = "/graphql" if self.kind == "plop" else "/ws"
        return [f"ws://{HOST}:{port}{path}" for port in self.server.ports]

    @property
    def send_path(self) -> str:
        return "/graphql" if self.kind == "plop" else "/send"

    def connection(self) -> HttpConnection:
        """An HTTP connection to the next instance in turn."""
        ports = self.server.ports
        self._turn += 1
        return HttpConnection(HOST, ports[self._turn % len(ports)])

    @staticmethod
    def send_body(room: str, text: str, client_id: str) -> bytes:
        """The sendMessage request (the baseline reads the same body)."""
        variables = {"roomId": room, "text": text, "clientId": client_id}
        return json.dumps({"query": SEND_MESSAGE, "variables": variables}).encode()

    async def send(self, connection: HttpConnection, account: Account, room: str, text: str) -> int:
        """Sends one message; its seq."""
        body = self.send_body(room, text, secrets.token_hex(8))
        try:
            answer = json.loads(await connection.post(self.send_path, body, account.token))
        except HttpError as exc:
            raise SendFailed(str(exc)) from exc
        if answer.get("errors"):
            errors = answer["errors"]
            raise SendFailed(json.dumps(errors)[:500], error_codes(errors))
        seq: int = answer["data"]["sendMessage"]["seq"]
        return seq

    async def subscriptions(self) -> int:
        """Subscriptions the server streams now (all its instances together)."""
        total = 0
        async with httpx.AsyncClient(timeout=10) as client:
            for base_url in self.server.base_urls:
                if self.kind == "baseline":
                    count: int = (await client.get(f"{base_url}/stats")).json()["subscriptions"]
                    total += count
                    continue
                text = (await client.get(f"{base_url}/metrics")).text
                match = _ACTIVE.search(text)
                total += int(float(match.group(1))) if match else 0
        return total

    async def wait_subscriptions(
        self, at_least: int, within: float = SETTLE_TIMEOUT_SECONDS
    ) -> tuple[int, bool]:
        """Waits until the server holds at least this many; (count, reached)."""
        deadline = time.monotonic() + within
        count = await self.subscriptions()
        while count < at_least and time.monotonic() < deadline:
            # Another process's gauge: there is no event to await across processes.
            await asyncio.sleep(0.1)
            count = await self.subscriptions()
        return count, count >= at_least

    async def wait_no_subscriptions(self, within: float = SETTLE_TIMEOUT_SECONDS) -> int:
        deadline = time.monotonic() + within
        count = await self.subscriptions()
        while count > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            count = await self.subscriptions()
        return count

    async def populate(self, users: int, rooms: int) -> Population:
        """``users`` accounts, all members of each of ``rooms`` group rooms."""
        if self.kind == "baseline":
            # Ids as long as Plop's, so that frames have the same size.
            return Population(
                [Account("-", secrets.token_hex(12)) for _ in range(users)],
                [secrets.token_hex(12) for _ in range(rooms)],
            )
        accounts = await self._sign_up(users)
        connection = self.connection()
        try:
            room_ids = []
            owner, others = accounts[0], [account.id for account in accounts[1:]]
            for index in range(rooms):
                data = await self._call(
                    connection,
                    CREATE_GROUP,
                    {"title": f"bench {index}", "memberIds": others},
                    owner.token,
                )
                room_ids.append(data["createGroupRoom"]["id"])
            # Not the owner's friends (no presence between them): each joins by accepting.
            # A list holds at most 100 invitations: ask again until none is left.
            for account in accounts[1:]:
                while pending := (
                    await self._call(connection, ROOM_INVITATIONS, {}, account.token)
                )["roomInvitations"]:
                    for invitation in pending:
                        accept = {"id": invitation["id"]}
                        await self._call(connection, ACCEPT_INVITATION, accept, account.token)
        finally:
            await connection.close()
        return Population(accounts, room_ids)

    async def sign_up(self, users: int) -> list[Account]:
        """``users`` fresh accounts, signed up through the API."""
        return await self._sign_up(users)

    async def call(
        self,
        connection: HttpConnection,
        query: str,
        variables: dict[str, object],
        token: str | None = None,
    ) -> Any:
        """One GraphQL operation over ``connection``: its data (its errors raise)."""
        return await self._call(connection, query, variables, token)

    async def _sign_up(self, users: int) -> list[Account]:
        prefix = f"b{secrets.token_hex(4)}"
        accounts: list[Account | None] = [None] * users
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(users):
            queue.put_nowait(index)

        async def worker() -> None:
            connection = self.connection()
            try:
                while not queue.empty():
                    index = queue.get_nowait()
                    variables: dict[str, object] = {
                        "username": f"{prefix}_{index}",
                        "password": PASSWORD,
                    }
                    data = await self._call(connection, SIGN_UP, variables)
                    payload = data["signUp"]
                    accounts[index] = Account(payload["token"], payload["user"]["id"])
            finally:
                await connection.close()

        await asyncio.gather(*(worker() for _ in range(min(SIGN_UP_CONCURRENCY, users))))
        return [account for account in accounts if account is not None]

    @staticmethod
    async def _call(
        connection: HttpConnection,
        query: str,
        variables: dict[str, object],
        token: str | None = None,
    ) -> Any:
        answer = await connection.post_json(
            "/graphql", {"query": query, "variables": variables}, token
        )
        if answer.get("errors"):
            raise RuntimeError(f"{query.split('(')[0]}: {answer['errors']}")
        return answer["data"]
