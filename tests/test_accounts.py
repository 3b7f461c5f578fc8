"""Accounts and sessions over HTTP, on the real services and the embedded default."""

from __future__ import annotations

import hashlib

import pytest
from redis.asyncio import Redis

from tests.support.clients import SIGN_UP, call, error_code, http_session, sign_up, unique_name
from tests.support.server import ServerProcess

LOG_IN = """
mutation($u: String!, $p: String!) {
  logIn(username: $u, password: $p) { token user { id username } }
}
"""
ME = "{ me { id username displayName } }"
PASSWORD = "correct horse battery"


async def test_sign_up_log_in_and_me(any_server: ServerProcess) -> None:
    name = unique_name("Mixed")
    async with http_session(any_server) as session:
        signed = await call(
            session, SIGN_UP, username=name, password=PASSWORD, displayName="Ann Lee"
        )
        user = signed["signUp"]["user"]
        assert user["username"] == name.lower()
        assert user["displayName"] == "Ann Lee"
        logged = await call(session, LOG_IN, u=name.upper(), p=PASSWORD)
    assert logged["logIn"]["user"]["id"] == user["id"]
    assert logged["logIn"]["token"] != signed["signUp"]["token"]
    async with http_session(any_server, logged["logIn"]["token"]) as session:
        me = await call(session, ME)
    assert me["me"] == {"id": user["id"], "username": name.lower(), "displayName": "Ann Lee"}


async def test_display_name_defaults_to_username(any_server: ServerProcess) -> None:
    account = await sign_up(any_server)
    assert account.display_name == account.username


async def test_duplicate_username_in_any_letter_case_is_conflict(any_server: ServerProcess) -> None:
    account = await sign_up(any_server)
    async with http_session(any_server) as session:
        code = await error_code(
            session, SIGN_UP, username=account.username.upper(), password=PASSWORD
        )
    assert code == "CONFLICT"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("ab", PASSWORD),  # too short
        ("x" * 33, PASSWORD),  # too long
        ("bad name", PASSWORD),  # space
        ("bad-name", PASSWORD),  # '-' is not allowed
        ("émile", PASSWORD),  # not [a-z0-9_.]
        ("good_name", "short7!"),  # password under 8
    ],
)
async def test_bad_username_or_short_password_is_bad_user_input(
    any_server: ServerProcess, username: str, password: str
) -> None:
    async with http_session(any_server) as session:
        assert await error_code(session, SIGN_UP, username=username, password=password) == (
            "BAD_USER_INPUT"
        )


async def test_bad_input_stores_no_account(any_server: ServerProcess) -> None:
    name = unique_name()
    async with http_session(any_server) as session:
        assert (
            await error_code(session, SIGN_UP, username=name, password="short") == "BAD_USER_INPUT"
        )
        # The name is still free: nothing was stored by the refused call.
        await call(session, SIGN_UP, username=name, password=PASSWORD)


async def test_wrong_password_and_unknown_user_are_unauthenticated(
    any_server: ServerProcess,
) -> None:
    account = await sign_up(any_server)
    async with http_session(any_server) as session:
        assert await error_code(session, LOG_IN, u=account.username, p="wrong password") == (
            "UNAUTHENTICATED"
        )
        assert await error_code(session, LOG_IN, u=unique_name(), p=PASSWORD) == "UNAUTHENTICATED"


@pytest.mark.parametrize("token", [None, "garbage", "Zm9v" * 11])
async def test_missing_or_garbage_token_is_unauthenticated(
    any_server: ServerProcess, token: str | None
) -> None:
    async with http_session(any_server, token) as session:
        assert await error_code(session, ME) == "UNAUTHENTICATED"


async def test_log_out_revokes_the_token_at_once(any_server: ServerProcess) -> None:
    account = await sign_up(any_server)
    async with http_session(any_server, account.token) as session:
        assert (await call(session, "mutation { logOut }"))["logOut"] is True
        assert await error_code(session, ME) == "UNAUTHENTICATED"


async def test_expired_token_is_unauthenticated(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    account = await sign_up(server_a)
    key = "plop:session:" + hashlib.sha256(account.token.encode()).hexdigest()
    async with Redis.from_url(real_env["PLOP_REDIS_URL"]) as redis:
        assert await redis.ttl(key) > 0  # the session has a server-side expiry
        await redis.pexpireat(key, 1)  # its expiry passes
    async with http_session(server_a, account.token) as session:
        assert await error_code(session, ME) == "UNAUTHENTICATED"


async def test_tokens_are_stored_hashed_never_in_clear(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    account = await sign_up(server_a)
    async with Redis.from_url(real_env["PLOP_REDIS_URL"], decode_responses=True) as redis:
        assert await redis.get("plop:session:" + account.token) is None
        stored = await redis.get(
            "plop:session:" + hashlib.sha256(account.token.encode()).hexdigest()
        )
    assert stored == account.id
    assert len(account.token) >= 32  # >= 128 bits of randomness, url-safe


async def test_user_by_id_needs_a_viewer_and_finds_users(any_server: ServerProcess) -> None:
    alice, bob = await sign_up(any_server), await sign_up(any_server)
    query = "query($id: ID!) { user(id: $id) { id username } }"
    async with http_session(any_server) as session:
        assert await error_code(session, query, id=bob.id) == "UNAUTHENTICATED"
    async with http_session(any_server, alice.token) as session:
        assert (await call(session, query, id=bob.id))["user"] == {
            "id": bob.id,
            "username": bob.username,
        }
        assert (await call(session, query, id="0" * 24))["user"] is None
        assert await error_code(session, query, id="not-an-id") == "BAD_USER_INPUT"
