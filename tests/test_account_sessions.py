"""The viewer's sessions: listed, ended one by one, and all others ended by a password change;
the budgets of endSession, changePassword and deleteAccount.

An ended session's sockets close on every instance (graphql-transport-ws with 4401,
graphql-ws with a ``connection_error``), its push devices go, and its token stops
working; the session that asked stays usable.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import pytest_asyncio
from bson import ObjectId
from gql.transport.exceptions import TransportQueryError
from pymongo import AsyncMongoClient

from tests.support.accounts import (
    CHANGE_PASSWORD,
    DELETE_ACCOUNT,
    END_SESSION,
    LOG_IN,
    PASSWORD,
    SESSIONS,
    client,
    current_session_id,
    log_in,
    sessions,
)
from tests.support.chat import (
    MESSAGE_ADDED,
    REGISTER_DEVICE,
    SEND,
    UNREGISTER_DEVICE,
    as_user,
    direct_room,
    send,
)
from tests.support.clients import SUBPROTOCOLS, Account, call, error_code, sign_up
from tests.support.push_receiver import WEBHOOK_SECRET
from tests.support.raw_socket import RawSocket, raw_socket
from tests.support.server import ServerProcess
from tests.test_sessions import CLOSE_WITHIN_SECONDS, assert_session_ended

NEW_PASSWORD = "a new horse battery"
ME = "{ me { id } }"


async def texts_seen(socket: RawSocket, count: int) -> list[str]:
    return [(await socket.frame())["payload"]["data"]["messageAdded"]["text"] for _ in range(count)]


async def test_sessions_are_listed_newest_first_with_their_user_agent(
    any_server: ServerProcess,
) -> None:
    first = await sign_up(any_server)
    long_agent = "Mozilla/5.0 " + "x" * 300
    laptop = await log_in(any_server, first, user_agent=long_agent)
    phone = await log_in(any_server, first, user_agent="PlopPhone/1.0")

    listed = await sessions(any_server, laptop)
    assert len(listed) == 3
    assert [each["current"] for each in listed] == [False, True, False]
    assert listed[0]["userAgent"] == "PlopPhone/1.0"
    assert listed[1]["userAgent"] == long_agent[:200]
    created = [each["createdAt"] for each in listed]
    assert created == sorted(created, reverse=True)
    for each in listed:
        assert each["lastSeenAt"] >= each["createdAt"]
        assert re.fullmatch(r"[0-9a-f]{64}", each["id"]), each
    ids = {each["id"] for each in listed}
    assert len(ids) == 3
    tokens = {first.token, laptop.token, phone.token}
    assert not ids & tokens
    # A listed id is no bearer token.
    for listed_id in ids:
        async with client(any_server, listed_id) as session:
            assert await error_code(session, ME) == "UNAUTHENTICATED"
    # Another user sees only their own.
    stranger = await sign_up(any_server)
    assert not {each["id"] for each in await sessions(any_server, stranger)} & ids


async def test_sessions_need_a_live_session(any_server: ServerProcess) -> None:
    account = await sign_up(any_server)
    async with client(any_server) as session:
        assert await error_code(session, SESSIONS) == "UNAUTHENTICATED"
    await as_user(any_server, account, "mutation { logOut }")
    async with client(any_server, account.token) as session:
        assert await error_code(session, SESSIONS) == "UNAUTHENTICATED"


async def test_a_session_ended_on_one_instance_cannot_send_on_another_at_once(
    server_a: ServerProcess, server_b: ServerProcess
) -> None:
    alice, bob = await sign_up(server_a), await sign_up(server_a)
    room_id = await direct_room(server_a, alice, bob)
    phone = await log_in(server_a, alice)
    # The second instance has seen the session send (it now knows whose it is).
    assert (await send(server_b, phone, room_id, "while live"))["text"] == "while live"
    await as_user(server_a, phone, "mutation { logOut }")
    async with client(server_b, phone.token) as session:
        assert await error_code(session, SEND, r=room_id, t="after", c=None) == "UNAUTHENTICATED"
    assert (await send(server_b, alice, room_id, "others go on"))["seq"] == 2


async def assert_closes_the_sockets_of(
    ended: list[Account],
    kept: Account,
    action: Callable[[], Awaitable[None]],
    servers: tuple[ServerProcess, ServerProcess],
    subprotocol: str,
) -> None:
    """Sockets of the ``ended`` sessions on both instances, and one of ``kept`` on the
    second, follow a room; ``action`` must close the first within 2 s while the kept
    one goes on receiving."""
    first, second = servers
    bob = await sign_up(first)
    room_id = await direct_room(first, kept, bob)
    async with AsyncExitStack() as stack:
        doomed = [
            await stack.enter_async_context(raw_socket(server, subprotocol, account.token))
            for account in ended
            for server in servers
        ]
        survivor = await stack.enter_async_context(raw_socket(second, subprotocol, kept.token))
        for socket in (*doomed, survivor):
            # From seq 0: "before" reaches each socket however late its subscribe lands.
            await socket.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": 0})
        await send(first, bob, room_id, "before")
        for socket in (*doomed, survivor):
            assert await texts_seen(socket, 1) == ["before"]

        await action()
        for socket in doomed:
            assert_session_ended(socket, await socket.ending(CLOSE_WITHIN_SECONDS))

        await send(first, bob, room_id, "after")
        assert await texts_seen(survivor, 1) == ["after"]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_end_session_closes_its_sockets_on_the_other_instance(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice = await sign_up(server_a)
    phone = await log_in(server_b, alice)
    phone_id = await current_session_id(server_b, phone)

    async def end_the_phones_session() -> None:
        async with client(server_a, alice.token) as session:
            assert (await call(session, END_SESSION, s=phone_id))["endSession"] is True

    await assert_closes_the_sockets_of(
        [phone], alice, end_the_phones_session, (server_a, server_b), subprotocol
    )
    async with client(server_b, phone.token) as session:
        assert await error_code(session, ME) == "UNAUTHENTICATED"
    listed = await sessions(server_a, alice)
    assert [each["id"] for each in listed] == [await current_session_id(server_a, alice)]


async def test_end_session_of_the_current_session_is_a_log_out(any_server: ServerProcess) -> None:
    account = await sign_up(any_server)
    own_id = await current_session_id(any_server, account)
    assert (await as_user(any_server, account, END_SESSION, s=own_id))["endSession"] is True
    async with client(any_server, account.token) as session:
        assert await error_code(session, ME) == "UNAUTHENTICATED"


async def test_end_session_refuses_what_is_not_the_viewers_live_session(
    any_server: ServerProcess,
) -> None:
    alice, mallory = await sign_up(any_server), await sign_up(any_server)
    alice_id = await current_session_id(any_server, alice)
    ended = await log_in(any_server, alice)
    ended_id = await current_session_id(any_server, ended)
    await as_user(any_server, ended, "mutation { logOut }")
    async with client(any_server, mallory.token) as session:
        # Another user's live session: NOT_FOUND, as for one that never existed.
        assert await error_code(session, END_SESSION, s=alice_id) == "NOT_FOUND"
        assert await error_code(session, END_SESSION, s="0" * 64) == "NOT_FOUND"
        # Ids that cannot be session ids, the bearer token itself among them.
        for bad in ("", "nope", alice.token, alice_id.upper(), alice_id + "0", "\u0000" * 64):
            assert await error_code(session, END_SESSION, s=bad) == "BAD_USER_INPUT", bad
        assert await error_code(session, END_SESSION, s=12) == "BAD_USER_INPUT"
        assert await error_code(session, END_SESSION, s=None) == "BAD_USER_INPUT"
    async with client(any_server, alice.token) as session:
        # A session that ended already (logOut) is gone.
        assert await error_code(session, END_SESSION, s=ended_id) == "NOT_FOUND"
    async with client(any_server, ended.token) as session:
        assert await error_code(session, END_SESSION, s=alice_id) == "UNAUTHENTICATED"
    # Alice's session is untouched by all of it.
    assert (await as_user(any_server, alice, ME))["me"]["id"] == alice.id


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_change_password_ends_every_other_session_on_every_instance(
    server_a: ServerProcess, server_b: ServerProcess, subprotocol: str
) -> None:
    alice = await sign_up(server_a)
    phone, laptop = await log_in(server_b, alice), await log_in(server_a, alice)

    async def change_the_password() -> None:
        async with client(server_a, alice.token) as session:
            changed = await call(session, CHANGE_PASSWORD, c=PASSWORD, n=NEW_PASSWORD)
        assert changed["changePassword"] is True

    await assert_closes_the_sockets_of(
        [phone, laptop], alice, change_the_password, (server_a, server_b), subprotocol
    )
    for gone in (phone, laptop):
        async with client(server_b, gone.token) as session:
            assert await error_code(session, ME) == "UNAUTHENTICATED"
    assert (await as_user(server_b, alice, ME))["me"]["id"] == alice.id
    assert len(await sessions(server_a, alice)) == 1
    async with client(server_b) as session:
        assert await error_code(session, LOG_IN, u=alice.username, p=PASSWORD) == (
            "UNAUTHENTICATED"
        )
        assert (await call(session, LOG_IN, u=alice.username, p=NEW_PASSWORD))["logIn"]["user"][
            "id"
        ] == alice.id


async def test_change_password_refuses_a_wrong_current_password_or_a_bad_new_one(
    any_server: ServerProcess,
) -> None:
    alice = await sign_up(any_server)
    other = await log_in(any_server, alice)
    async with client(any_server, alice.token) as session:
        assert await error_code(session, CHANGE_PASSWORD, c="wrong password", n=NEW_PASSWORD) == (
            "FORBIDDEN"
        )
        assert await error_code(session, CHANGE_PASSWORD, c=PASSWORD, n="short") == (
            "BAD_USER_INPUT"
        )
        assert await error_code(session, CHANGE_PASSWORD, c=PASSWORD, n="x" * 1025) == (
            "BAD_USER_INPUT"
        )
        assert await error_code(session, CHANGE_PASSWORD, c=PASSWORD, n=None) == ("BAD_USER_INPUT")
    # Nothing changed: the other session lives, the old password still logs in.
    assert (await as_user(any_server, other, ME))["me"]["id"] == alice.id
    await log_in(any_server, alice)
    async with client(any_server) as session:
        assert await error_code(session, CHANGE_PASSWORD, c=PASSWORD, n=NEW_PASSWORD) == (
            "UNAUTHENTICATED"
        )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tight_server(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """Real services, small budgets (three failed logIns per username), and push
    devices to register (no push is ever sent by these tests: the worker is off)."""
    server = ServerProcess(
        "accounts-tight",
        {
            **real_env,
            "PLOP_INSTANCE_ID": "accounts-tight",
            "PLOP_FAILED_LOG_IN_PER_USERNAME_LIMIT": "3",
            "PLOP_END_SESSION_LIMIT": "3",
            "PLOP_CHANGE_PASSWORD_LIMIT": "6",
            "PLOP_DELETE_ACCOUNT_LIMIT": "2",
            "PLOP_PUSH_WEBHOOK_URL": "http://127.0.0.1:9/webhook",
            "PLOP_PUSH_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PLOP_PUSH_WORKER_ENABLED": "false",
        },
    )
    await server.start()
    yield server
    await server.stop()


async def test_wrong_current_passwords_spend_the_failed_log_in_budget(
    tight_server: ServerProcess,
) -> None:
    alice = await sign_up(tight_server)
    async with client(tight_server, alice.token) as session:
        codes = [
            await error_code(session, CHANGE_PASSWORD, c=f"wrong {n}", n=NEW_PASSWORD)
            for n in range(4)
        ]
        assert codes == ["FORBIDDEN"] * 3 + ["RATE_LIMITED"]
        # The right password too, until the budget refills; and logIn as well.
        assert await error_code(session, CHANGE_PASSWORD, c=PASSWORD, n=NEW_PASSWORD) == (
            "RATE_LIMITED"
        )
    async with client(tight_server) as session:
        assert await error_code(session, LOG_IN, u=alice.username, p=PASSWORD) == "RATE_LIMITED"


async def test_ended_sessions_take_their_push_devices_with_them(
    tight_server: ServerProcess, server_a: ServerProcess
) -> None:
    alice = await sign_up(tight_server)
    phone, tablet = await log_in(tight_server, alice), await log_in(tight_server, alice)
    devices = {}
    for name, account in (("kept", alice), ("phone", phone), ("tablet", tablet)):
        devices[name] = f"{name}-{account.token[:8]}"
        await as_user(tight_server, account, REGISTER_DEVICE, p="WEBHOOK", t=devices[name])
    # endSession on another instance: the phone's device goes.
    phone_id = await current_session_id(tight_server, phone)
    await as_user(server_a, alice, END_SESSION, s=phone_id)
    # changePassword: the tablet's goes too; the asking session's device stays.
    await as_user(server_a, alice, CHANGE_PASSWORD, c=PASSWORD, n=NEW_PASSWORD)
    removed = await asyncio.gather(
        *(
            as_user(tight_server, alice, UNREGISTER_DEVICE, t=devices[name])
            for name in ("phone", "tablet", "kept")
        )
    )
    assert [each["unregisterPushDevice"] for each in removed] == [False, False, True]


async def test_last_seen_moves_when_a_session_is_used(any_server: ServerProcess) -> None:
    used = await sign_up(any_server)
    await log_in(any_server, used)  # a session never used after its logIn
    by_current = {each["current"]: each for each in await sessions(any_server, used)}
    # The listing is itself a use of the session it runs in (signUp was its last).
    assert by_current[True]["lastSeenAt"] > by_current[True]["createdAt"]
    assert by_current[False]["lastSeenAt"] == by_current[False]["createdAt"]
    assert by_current[True]["userAgent"].startswith("python-httpx/")


async def test_floods_of_end_session_and_change_password_are_rate_limited(
    tight_server: ServerProcess,
) -> None:
    alice = await sign_up(tight_server)
    async with client(tight_server, alice.token) as session:
        ends = [await error_code(session, END_SESSION, s="0" * 64) for _ in range(4)]
        assert ends == ["NOT_FOUND"] * 3 + ["RATE_LIMITED"]
        changes = [
            await error_code(session, CHANGE_PASSWORD, c=PASSWORD, n="short") for _ in range(7)
        ]
        assert changes == ["BAD_USER_INPUT"] * 6 + ["RATE_LIMITED"]


async def test_sessions_of_a_user_with_none_left_is_empty(any_server: ServerProcess) -> None:
    account = await sign_up(any_server)
    other = await log_in(any_server, account)
    await as_user(any_server, account, "mutation { logOut }")
    listed = await sessions(any_server, other)
    assert [each["current"] for each in listed] == [True]


async def test_wrong_passwords_at_delete_account_spend_the_failed_log_in_budget(
    tight_server: ServerProcess,
) -> None:
    alice = await sign_up(tight_server)
    async with client(tight_server, alice.token) as session:
        codes = [await error_code(session, DELETE_ACCOUNT, p=f"wrong {n}") for n in range(2)]
        assert codes == ["FORBIDDEN", "FORBIDDEN"]
        # The account's own budget of deletions tried (two here) is spent.
        try:
            await call(session, DELETE_ACCOUNT, p=PASSWORD)
        except TransportQueryError as exc:
            assert exc.errors and exc.errors[0]["extensions"]["code"] == "RATE_LIMITED"
            assert "account deletions" in exc.errors[0]["message"]
        else:
            raise AssertionError("a third deleteAccount passed a budget of two")
    async with client(tight_server) as session:
        # Two failures were deleteAccount's: one more failed logIn spends the three.
        assert await error_code(session, LOG_IN, u=alice.username, p="wrong") == "UNAUTHENTICATED"
        assert await error_code(session, LOG_IN, u=alice.username, p=PASSWORD) == "RATE_LIMITED"
    assert (await as_user(tight_server, alice, ME))["me"]["id"] == alice.id


async def test_a_deleted_account_leaves_no_push_device_and_no_stored_text(
    tight_server: ServerProcess, server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    alice, bob = await sign_up(tight_server), await sign_up(tight_server)
    phone = await log_in(tight_server, alice)
    for account in (alice, phone):
        await as_user(tight_server, account, REGISTER_DEVICE, p="WEBHOOK", t=account.token[:20])
    room_id = await direct_room(tight_server, alice, bob)
    await send(tight_server, alice, room_id, "secret words")
    assert (await as_user(server_a, alice, DELETE_ACCOUNT, p=PASSWORD))["deleteAccount"] is True
    store: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(real_env["PLOP_MONGO_URL"])
    try:
        database = store.get_default_database()
        assert await database["push_devices"].count_documents({"user_id": ObjectId(alice.id)}) == 0
        stored = await database["messages"].find({"room_id": ObjectId(room_id)}).to_list()
        assert [(m["seq"], m["text"], m["deleted"]) for m in stored] == [(1, "", True)]
        kept = await database["users"].find_one({"_id": ObjectId(alice.id)})
        assert kept is not None
        assert (kept["deleted"], kept["password_hash"]) == (True, "")
    finally:
        await store.close()
