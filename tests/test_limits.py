"""Abuse limits: rate limits, password-guessing cuts, argon2 load shedding, socket caps
and the member cap under concurrency.

Most tests run on a server of their own against the real services, with small limits
so that each is quick to cross. That server trusts loopback as a proxy, so every
request names a fresh client address in X-Forwarded-For: per-address budgets in the
shared Redis never carry over between tests or runs. One server on the embedded
backends with the default limits (but for sign-ups) checks that paced use is never
refused, that the forwarded header is ignored unless its sender is trusted, and that
the Lua script runs on fakeredis.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import fakeredis
import httpx
import pytest
import pytest_asyncio
import websockets
from starlette.requests import HTTPConnection

from errors import RateLimited
from services.rate_limits import Limit, LimitName, RateLimiter
from settings import Settings
from tests.support.chat import (
    CREATE_DIRECT,
    CREATE_GROUP,
    FRIEND_REQUESTS,
    HISTORY,
    INVITE,
    RESPOND,
    ROOM,
    ROOMS,
    SEND,
    SEND_FRIEND_REQUEST,
    befriend_all,
)
from tests.support.clients import (
    SIGN_UP,
    SUBPROTOCOLS,
    TRANSPORT_WS,
    Account,
    active_subscriptions,
    metric,
    unique_name,
    wait_active_subscriptions,
)
from tests.support.server import ServerProcess
from transport.client_address import client_address

PASSWORD = "correct horse battery"
LOG_IN = "mutation($u: String!, $p: String!) { logIn(username: $u, password: $p) { token } }"
ROOM_ADDED = "subscription { roomAdded { id } }"
MEMBER_CAP = 5
SIGN_UP_BATCH = 4  # at most this many hashes at once: within the limited server's queue
MAX_SUBSCRIPTIONS = 2
SMALL_LIMITS = {
    # COUNT at once, refilled over SECONDS: one call back every 2 s (1.5 s cooldown),
    # every 3 s for failed log-ins, whose guesses take turns on the hashing threads.
    "PLOP_SEND_MESSAGE_LIMIT": "3",
    "PLOP_SEND_MESSAGE_LIMIT_SECONDS": "6",
    "PLOP_CREATE_ROOM_LIMIT": "3",
    # One back every 10 s: three creations of two kinds (each a few writes) may take
    # over 2 s on a loaded machine, and must not see one come back before the fourth.
    "PLOP_CREATE_ROOM_LIMIT_SECONDS": "30",
    # Ten invites at once, one back every 6 s: a loaded machine may take seconds over
    # the ten, and must not see one come back before the eleventh.
    "PLOP_INVITE_MEMBERS_LIMIT": "10",
    "PLOP_INVITE_MEMBERS_LIMIT_SECONDS": "60",
    "PLOP_SEND_FRIEND_REQUEST_LIMIT": "3",
    "PLOP_SEND_FRIEND_REQUEST_LIMIT_SECONDS": "6",
    "PLOP_FRIEND_REQUEST_COOLDOWN_SECONDS": "1.5",
    "PLOP_FAILED_LOG_IN_PER_USERNAME_LIMIT": "3",
    "PLOP_FAILED_LOG_IN_PER_USERNAME_LIMIT_SECONDS": "9",
    "PLOP_FAILED_LOG_IN_PER_ADDRESS_LIMIT": "3",
    "PLOP_FAILED_LOG_IN_PER_ADDRESS_LIMIT_SECONDS": "9",
    "PLOP_SIGN_UP_PER_ADDRESS_LIMIT": "3",
    "PLOP_SIGN_UP_PER_ADDRESS_LIMIT_SECONDS": "6",
    "PLOP_PASSWORD_HASH_THREADS": "2",
    "PLOP_PASSWORD_HASH_QUEUE": "4",
    "PLOP_MAX_SOCKETS_PER_USER": "2",
    "PLOP_MAX_SOCKETS_PER_ADDRESS": "3",
    "PLOP_MAX_SUBSCRIPTIONS_PER_CONNECTION": str(MAX_SUBSCRIPTIONS),
    "PLOP_MAX_GROUP_MEMBERS": str(MEMBER_CAP),
    "PLOP_FORWARDED_ALLOW_IPS": "127.0.0.1",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """A server on the real services with small limits, trusting loopback as a proxy."""
    # Log-ins that wait in the hashing queue must take longer than a refusal: a hash
    # at a real cost (not the suite's cheapest), so that the queue is what they wait on.
    hashing = {"PLOP_PASSWORD_HASH_TIME_COST": "2", "PLOP_PASSWORD_HASH_MEMORY_KIB": "32768"}
    server = ServerProcess(
        "limits", {**real_env, **SMALL_LIMITS, **hashing, "PLOP_INSTANCE_ID": "limits"}
    )
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def embedded() -> AsyncIterator[ServerProcess]:
    """``plop serve`` on the embedded backends, with the default limits but a sign-up
    budget of 5 an hour, small enough to cross quickly."""
    server = ServerProcess("limits-embedded", {"PLOP_SIGN_UP_PER_ADDRESS_LIMIT": "5"})
    await server.start()
    yield server
    await server.stop()


def fresh_address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@dataclass
class Reply:
    data: dict[str, Any] | None
    errors: list[dict[str, Any]]
    seconds: float

    @property
    def code(self) -> str | None:
        return self.errors[0]["extensions"]["code"] if self.errors else None

    @property
    def retry_after(self) -> float:
        value: float = self.errors[0]["extensions"]["retryAfter"]
        return value


@dataclass
class User:
    token: str
    id: str
    username: str


async def post(
    server: ServerProcess,
    query: str,
    token: str | None = None,
    address: str | None = None,
    client: httpx.AsyncClient | None = None,
    **variables: Any,
) -> Reply:
    """One operation over HTTP from the given client address (X-Forwarded-For)."""
    if client is None:
        async with httpx.AsyncClient(timeout=30) as own:
            return await post(server, query, token, address, own, **variables)
    headers = {"X-Forwarded-For": address or fresh_address()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()
    response = await client.post(
        server.http_url, json={"query": query, "variables": variables}, headers=headers
    )
    body = response.json()
    return Reply(body.get("data"), body.get("errors") or [], time.monotonic() - started)


async def ok(server: ServerProcess, query: str, token: str | None = None, **variables: Any) -> Any:
    reply = await post(server, query, token, **variables)
    assert not reply.errors, reply.errors
    return reply.data


def assert_limited(reply: Reply) -> float:
    """The reply is RATE_LIMITED with a positive retryAfter, which it returns."""
    assert reply.code == "RATE_LIMITED", reply.errors or reply.data
    assert reply.retry_after > 0
    return reply.retry_after


async def new_user(server: ServerProcess) -> User:
    data = await ok(server, SIGN_UP, username=unique_name("lim"), password=PASSWORD)
    return User(
        data["signUp"]["token"], data["signUp"]["user"]["id"], data["signUp"]["user"]["username"]
    )


def account(user: User) -> Account:
    """The user as the shared helpers take them."""
    return Account(user.token, user.id, user.username, user.username)


async def new_users(server: ServerProcess, count: int) -> list[User]:
    """Fresh users, signed up a few at a time (within the hashing queue)."""
    users: list[User] = []
    while len(users) < count:
        batch = min(SIGN_UP_BATCH, count - len(users))
        users += await asyncio.gather(*(new_user(server) for _ in range(batch)))
    return users


async def direct(server: ServerProcess, me: User, other: User) -> str:
    room_id: str = (await ok(server, CREATE_DIRECT, me.token, u=other.id))["createDirectRoom"]["id"]
    return room_id


async def history_texts(server: ServerProcess, reader: User, room_id: str) -> list[str]:
    page = (await ok(server, HISTORY, reader.token, r=room_id, last=100))["messages"]
    return [edge["node"]["text"] for edge in page["edges"]]


# --- rate limits on actions -------------------------------------------------------
# Each budget is spent by concurrent calls, so that no refill (one per 2 s) comes
# between them and the call that must be refused, however busy the machine is.


async def test_send_message_past_the_burst_is_refused_stores_nothing_and_passes_later(
    limited: ServerProcess,
) -> None:
    alice, bob = await new_users(limited, 2)
    room_id = await direct(limited, alice, bob)
    texts = [f"m{i}" for i in range(3)]
    await asyncio.gather(*(ok(limited, SEND, alice.token, r=room_id, t=text) for text in texts))
    wait = assert_limited(await post(limited, SEND, alice.token, r=room_id, t="one too many"))
    assert wait <= 2
    # Another user of the same room is not held back by alice's budget.
    await ok(limited, SEND, bob.token, r=room_id, t="bob here")
    assert "one too many" not in await history_texts(limited, alice, room_id)
    await asyncio.sleep(wait)
    await ok(limited, SEND, alice.token, r=room_id, t="after the wait")
    assert sorted(await history_texts(limited, alice, room_id)) == sorted(
        [*texts, "bob here", "after the wait"]
    )


async def test_room_creation_of_both_kinds_shares_one_budget(limited: ServerProcess) -> None:
    alice, bob, carol = await new_users(limited, 3)
    await asyncio.gather(
        direct(limited, alice, bob),
        direct(limited, alice, carol),
        ok(limited, CREATE_GROUP, alice.token, t="one", m=[bob.id]),
    )
    wait = assert_limited(await post(limited, CREATE_GROUP, alice.token, t="two", m=[bob.id]))
    rooms = (await ok(limited, ROOMS, alice.token, first=10))["rooms"]["edges"]
    assert len(rooms) == 3
    await ok(limited, CREATE_GROUP, bob.token, t="bob's", m=[carol.id])  # bob has his own
    await asyncio.sleep(wait)
    await ok(limited, CREATE_GROUP, alice.token, t="two", m=[bob.id])


async def test_invites_past_the_budget_are_refused_and_add_no_one(limited: ServerProcess) -> None:
    alice, bob, carol = await new_users(limited, 3)
    await befriend_all(limited, account(alice), [account(bob), account(carol)])  # added at once
    created = await ok(limited, CREATE_GROUP, alice.token, t="g", m=[bob.id])
    room_id = created["createGroupRoom"]["id"]
    # Inviting a member again changes nothing, but counts.
    await asyncio.gather(
        *(ok(limited, INVITE, alice.token, r=room_id, u=[bob.id]) for _ in range(10))
    )
    wait = assert_limited(await post(limited, INVITE, alice.token, r=room_id, u=[carol.id]))
    members = (await ok(limited, ROOM, alice.token, r=room_id))["room"]["members"]
    assert carol.id not in {member["id"] for member in members}
    await asyncio.sleep(wait)
    invited = (await ok(limited, INVITE, alice.token, r=room_id, u=[carol.id]))["inviteMembers"]
    assert carol.id in {member["id"] for member in invited["members"]}


async def test_friend_requests_past_the_budget_are_refused_and_not_stored(
    limited: ServerProcess,
) -> None:
    alice, *others, last = await new_users(limited, 5)
    await asyncio.gather(*(ok(limited, SEND_FRIEND_REQUEST, alice.token, u=o.id) for o in others))
    wait = assert_limited(await post(limited, SEND_FRIEND_REQUEST, alice.token, u=last.id))
    assert (await ok(limited, FRIEND_REQUESTS, last.token))["friendRequests"] == []
    await ok(limited, SEND_FRIEND_REQUEST, last.token, u=others[0].id)  # another user may ask
    await asyncio.sleep(wait)
    await ok(limited, SEND_FRIEND_REQUEST, alice.token, u=last.id)


async def test_asking_again_after_a_decline_waits_out_the_cooldown(limited: ServerProcess) -> None:
    alice, bob, carol = await new_users(limited, 3)
    request = (await ok(limited, SEND_FRIEND_REQUEST, alice.token, u=bob.id))["sendFriendRequest"]
    await ok(limited, RESPOND, bob.token, r=request["id"], a=False)
    wait = assert_limited(await post(limited, SEND_FRIEND_REQUEST, alice.token, u=bob.id))
    assert wait <= 1.5
    assert (
        "declined"
        in (await post(limited, SEND_FRIEND_REQUEST, alice.token, u=bob.id)).errors[0]["message"]
    )
    assert (await ok(limited, FRIEND_REQUESTS, bob.token))["friendRequests"] == []
    await ok(limited, SEND_FRIEND_REQUEST, carol.token, u=bob.id)  # others may ask bob
    await asyncio.sleep(wait)
    again = (await ok(limited, SEND_FRIEND_REQUEST, alice.token, u=bob.id))["sendFriendRequest"]
    assert again["status"] == "PENDING"


# --- password guessing and sign-ups ---------------------------------------------


async def test_wrong_passwords_for_one_username_lock_it_even_from_new_addresses(
    limited: ServerProcess,
) -> None:
    alice, bob = await new_users(limited, 2)
    # Each guess from an address of its own.
    guesses = [post(limited, LOG_IN, u=alice.username, p="wrong password") for _ in range(3)]
    assert {reply.code for reply in await asyncio.gather(*guesses)} == {"UNAUTHENTICATED"}
    wait = assert_limited(await post(limited, LOG_IN, u=alice.username, p=PASSWORD))
    await ok(limited, LOG_IN, u=bob.username, p=PASSWORD)  # bob is unaffected
    await asyncio.sleep(wait)
    # Logging in right costs nothing: more in a row than the failure budget pass.
    for _ in range(4):
        await ok(limited, LOG_IN, u=alice.username, p=PASSWORD)


async def test_wrong_passwords_from_one_address_cut_that_address_only(
    limited: ServerProcess,
) -> None:
    alice = await new_user(limited)
    guesser = fresh_address()
    # A different username each time, known or not.
    guesses = [
        post(limited, LOG_IN, address=guesser, u=unique_name("no"), p="guess 1234")
        for _ in range(3)
    ]
    assert {reply.code for reply in await asyncio.gather(*guesses)} == {"UNAUTHENTICATED"}
    wait = assert_limited(
        await post(limited, LOG_IN, address=guesser, u=alice.username, p=PASSWORD)
    )
    await ok(limited, LOG_IN, u=alice.username, p=PASSWORD)  # from elsewhere it works
    await asyncio.sleep(wait)
    reply = await post(limited, LOG_IN, address=guesser, u=alice.username, p=PASSWORD)
    assert not reply.errors, reply.errors


async def test_sign_ups_from_one_address_are_limited_and_a_refused_one_stores_nothing(
    limited: ServerProcess,
) -> None:
    address = fresh_address()
    names = [unique_name() for _ in range(4)]
    replies = await asyncio.gather(
        *(
            post(limited, SIGN_UP, address=address, username=name, password=PASSWORD)
            for name in names
        )
    )
    assert [reply.code for reply in replies].count(None) == 3
    refused = next(name for name, reply in zip(names, replies, strict=True) if reply.errors)
    wait = assert_limited(replies[names.index(refused)])
    await ok(limited, SIGN_UP, username=refused, password=PASSWORD)  # the name is still free
    await asyncio.sleep(wait)
    reply = await post(limited, SIGN_UP, address=address, username=unique_name(), password=PASSWORD)
    assert not reply.errors, reply.errors


async def test_a_burst_of_log_ins_past_the_hashing_queue_is_shed_fast(
    limited: ServerProcess,
) -> None:
    alice = await new_user(limited)
    async with httpx.AsyncClient(timeout=30) as client:
        burst = [
            asyncio.create_task(post(limited, LOG_IN, client=client, u=alice.username, p=PASSWORD))
            for _ in range(30)
        ]
        # Once the first call is answered (refused: the queue is full) the accepted
        # ones are still hashing; the server answers other requests meanwhile.
        await asyncio.wait(burst, return_when=asyncio.FIRST_COMPLETED)
        ping = await post(limited, "{ __typename }", client=client)
        replies = await asyncio.gather(*burst)
    assert ping.data == {"__typename": "Query"}
    assert ping.seconds < 1.0
    refused = [reply for reply in replies if reply.code == "RATE_LIMITED"]
    passed = [reply for reply in replies if not reply.errors]
    assert refused and passed
    assert len(refused) + len(passed) == len(replies), [r.errors for r in replies]
    assert all(reply.retry_after > 0 for reply in refused)
    # A refusal waits for no hash; the slowest accepted log-in waited for several.
    assert max(reply.seconds for reply in refused) < max(reply.seconds for reply in passed)
    await ok(limited, LOG_IN, u=alice.username, p=PASSWORD)  # and all is well after


# --- the member cap -------------------------------------------------------------


async def test_concurrent_invites_never_push_a_group_past_the_member_cap(
    limited: ServerProcess,
) -> None:
    alice, bob, *invitees = await new_users(limited, 12)
    await befriend_all(limited, account(alice), [account(user) for user in (bob, *invitees)])
    created = await ok(limited, CREATE_GROUP, alice.token, t="capped", m=[bob.id])
    room_id = created["createGroupRoom"]["id"]
    replies = await asyncio.gather(
        *(post(limited, INVITE, alice.token, r=room_id, u=[invitee.id]) for invitee in invitees)
    )
    accepted = [reply for reply in replies if not reply.errors]
    assert len(accepted) == MEMBER_CAP - 2
    assert {reply.code for reply in replies if reply.errors} == {"BAD_USER_INPUT"}
    members = (await ok(limited, ROOM, alice.token, r=room_id))["room"]["members"]
    assert len(members) == MEMBER_CAP


# --- sockets --------------------------------------------------------------------


async def _connect(
    server: ServerProcess, subprotocol: str, token: str, address: str
) -> tuple[Any, dict[str, Any] | None]:
    """A raw socket after connection_init: the socket and the server's first frame
    (None if it closed the socket without one)."""
    socket = await websockets.connect(
        server.ws_url,
        subprotocols=[subprotocol],  # type: ignore[list-item]
        additional_headers={"X-Forwarded-For": address},
    )
    # A socket over the per-address cap is closed as it opens: maybe before this send.
    with suppress(websockets.ConnectionClosed):
        await socket.send(json.dumps({"type": "connection_init", "payload": {"authToken": token}}))
    try:
        async with asyncio.timeout(10):
            return socket, json.loads(await socket.recv())
    except websockets.ConnectionClosed:
        return socket, None


def _assert_refused(socket: Any, subprotocol: str, first: dict[str, Any] | None, cap: str) -> None:
    if subprotocol == TRANSPORT_WS:
        assert first is None
        assert socket.close_code == 4403
        assert cap in socket.close_reason
    else:
        assert first is not None and first["type"] == "connection_error"
        assert first["payload"]["extensions"]["code"] == "RATE_LIMITED"
        assert cap in first["payload"]["message"]


async def _closed_all(server: ServerProcess, sockets: list[Any], open_before: float) -> None:
    for socket in sockets:
        await socket.close()
    async with asyncio.timeout(10):
        # Another process's count: polled, there is no event to await across processes.
        while await metric(server, "plop_websockets_open") > open_before:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_sockets_past_the_per_user_cap_are_refused_until_one_closes(
    limited: ServerProcess, subprotocol: str
) -> None:
    alice, bob = await new_users(limited, 2)
    open_before = await metric(limited, "plop_websockets_open")
    sockets = []
    for _ in range(2):
        socket, first = await _connect(limited, subprotocol, alice.token, fresh_address())
        assert first is not None and first["type"] == "connection_ack"
        sockets.append(socket)
    refused, first = await _connect(limited, subprotocol, alice.token, fresh_address())
    _assert_refused(refused, subprotocol, first, "for this user")
    await refused.close()
    other, first = await _connect(limited, subprotocol, bob.token, fresh_address())
    assert first is not None and first["type"] == "connection_ack"  # bob has his own
    await _closed_all(limited, [sockets.pop(), other], open_before + 1)
    again, first = await _connect(limited, subprotocol, alice.token, fresh_address())
    assert first is not None and first["type"] == "connection_ack"
    await _closed_all(limited, [again, *sockets], open_before)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_sockets_past_the_per_address_cap_are_refused(
    limited: ServerProcess, subprotocol: str
) -> None:
    users = await new_users(limited, 4)
    address = fresh_address()
    open_before = await metric(limited, "plop_websockets_open")
    sockets = []
    for user in users[:3]:
        socket, first = await _connect(limited, subprotocol, user.token, address)
        assert first is not None and first["type"] == "connection_ack"
        sockets.append(socket)
    refused, first = await _connect(limited, subprotocol, users[3].token, address)
    _assert_refused(refused, subprotocol, first, "from this address")
    await refused.close()
    elsewhere, first = await _connect(limited, subprotocol, users[3].token, fresh_address())
    assert first is not None and first["type"] == "connection_ack"
    await _closed_all(limited, [elsewhere, *sockets], open_before)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_subscriptions_past_the_per_socket_limit_get_a_coded_error(
    limited: ServerProcess, subprotocol: str
) -> None:
    alice = await new_user(limited)
    start = "subscribe" if subprotocol == TRANSPORT_WS else "start"
    open_before = await metric(limited, "plop_websockets_open")
    active_before = await active_subscriptions(limited)
    socket, first = await _connect(limited, subprotocol, alice.token, fresh_address())
    assert first is not None and first["type"] == "connection_ack"
    try:
        for number in range(1, MAX_SUBSCRIPTIONS + 2):
            if number > MAX_SUBSCRIPTIONS:  # the first ones are running: this one is over
                await wait_active_subscriptions(limited, active_before + MAX_SUBSCRIPTIONS)
            await socket.send(
                json.dumps({"type": start, "id": str(number), "payload": {"query": ROOM_ADDED}})
            )
        async with asyncio.timeout(10):
            while (frame := json.loads(await socket.recv()))["type"] in ("ka", "pong"):
                pass
        assert frame["type"] == "error" and frame["id"] == str(MAX_SUBSCRIPTIONS + 1)
        errors = frame["payload"] if subprotocol == TRANSPORT_WS else [frame["payload"]]
        assert errors[0]["message"] == "Subscription limit reached"
        assert errors[0]["extensions"]["code"] == "RATE_LIMITED"
    finally:
        await _closed_all(limited, [socket], open_before)


# --- the embedded default ---------------------------------------------------------------


async def test_paced_sending_under_the_defaults_is_never_refused(embedded: ServerProcess) -> None:
    alice, bob = await new_users(embedded, 2)
    room_id = await direct(embedded, alice, bob)
    texts = [f"paced {i}" for i in range(16)]
    for text in texts:  # four a second for four seconds
        await ok(embedded, SEND, alice.token, r=room_id, t=text)
        await asyncio.sleep(0.25)
    assert await history_texts(embedded, bob, room_id) == texts


async def test_forwarded_header_is_ignored_unless_the_peer_is_trusted(
    embedded: ServerProcess,
) -> None:
    """By default every sign-up from loopback counts against loopback, whatever address
    X-Forwarded-For names: of seven, at most five pass (on the Redis stand-in)."""
    replies = await asyncio.gather(
        *(post(embedded, SIGN_UP, username=unique_name(), password=PASSWORD) for _ in range(7))
    )
    refused = [reply for reply in replies if reply.errors]
    assert len(refused) >= 2
    assert all(assert_limited(reply) > 60 for reply in refused)  # an hour refills slowly
    assert "sign-ups from this address" in refused[0].errors[0]["message"]


def test_default_limits_are_far_above_a_person_and_below_a_script() -> None:
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    assert defaults["send_message_limit"] == 120
    assert defaults["send_message_limit"] / defaults["send_message_limit_seconds"] == 20
    assert (defaults["create_room_limit"], defaults["create_room_limit_seconds"]) == (30, 60)
    assert (defaults["invite_members_limit"], defaults["invite_members_limit_seconds"]) == (60, 60)
    assert defaults["send_friend_request_limit"] == 30
    assert defaults["friend_request_cooldown_seconds"] == 24 * 3600
    assert defaults["failed_log_in_per_username_limit"] == 10
    assert defaults["failed_log_in_per_address_limit"] == 100
    assert defaults["sign_up_per_address_limit"] == 20
    assert defaults["forwarded_allow_ips"] == ""
    assert (defaults["max_sockets_per_user"], defaults["max_sockets_per_address"]) == (20, 200)


def _connection(peer: str, forwarded: list[str]) -> HTTPConnection:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return HTTPConnection({"type": "http", "client": (peer, 4000), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # Nobody is trusted by default: the header is ignored.
        ("127.0.0.1", ["203.0.113.9"], "", "127.0.0.1"),
        # A trusted proxy names the client.
        ("10.0.0.2", ["203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
        # What the client wrote itself, left of what the proxy appended, is not taken.
        ("10.0.0.2", ["198.51.100.1, 203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
        # Through two trusted proxies, the address the outer one saw.
        ("10.0.0.2", ["203.0.113.9, 10.0.0.7"], "10.0.0.0/8", "203.0.113.9"),
        # An untrusted peer's header is ignored even if it names a trusted network.
        ("192.0.2.5", ["203.0.113.9"], "10.0.0.0/8", "192.0.2.5"),
        # Two header lines count as one list.
        ("10.0.0.2", ["198.51.100.1", "203.0.113.9"], "10.0.0.2", "203.0.113.9"),
    ],
)
def test_client_address_trusts_forwarded_for_only_from_listed_proxies(
    peer: str, forwarded: list[str], trusted: str, expected: str
) -> None:
    assert client_address(_connection(peer, forwarded), trusted, 128) == expected


async def test_a_budget_of_millions_spends_without_a_zero_expiry() -> None:
    # 10^8 calls over 6 s: one call's interval (60 ns) is below a float's step at
    # this time in ms, so the next arrival time equals now; PX 0 used to be refused.
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    limiter = RateLimiter(redis, {LimitName.SEND_MESSAGE: Limit(100_000_000, 6.0)})
    for _ in range(3):  # each raised the script's "invalid expire time" before
        await limiter.hit(LimitName.SEND_MESSAGE, "someone")


async def test_a_hit_in_a_session_spends_only_while_the_session_holds_its_owner() -> None:
    redis = fakeredis.FakeAsyncRedis(decode_responses=True)
    limiter = RateLimiter(redis, {LimitName.SEND_MESSAGE: Limit(2, 60.0)})
    await redis.set("session", "u1")
    assert await limiter.hit_in_session(LimitName.SEND_MESSAGE, "u1", "session", "u1")
    await redis.delete("session")  # revoked: refused, and nothing is spent
    assert not await limiter.hit_in_session(LimitName.SEND_MESSAGE, "u1", "session", "u1")
    await redis.set("session", "u1")
    assert await limiter.hit_in_session(LimitName.SEND_MESSAGE, "u1", "session", "u1")
    with pytest.raises(RateLimited):  # the budget of two is spent by the two live calls
        await limiter.hit_in_session(LimitName.SEND_MESSAGE, "u1", "session", "u1")
