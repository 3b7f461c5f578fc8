"""The cost of password hashing: argon2's recommended one by default, the operator's
when set, and hashes of any cost still accepted at log-in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from pymongo import AsyncMongoClient

from auth.passwords import PasswordHashing
from settings import Settings
from tests.support.clients import call, http_session, sign_up, unique_name
from tests.support.server import CHEAP_PASSWORD_HASHING, ServerProcess

LOG_IN = "mutation($u: String!, $p: String!) { logIn(username: $u, password: $p) { token } }"


def test_the_default_cost_is_argon2s_recommended_one() -> None:
    recommended = PasswordHasher()
    settings = Settings()
    assert settings.password_hash_time_cost == recommended.time_cost
    assert settings.password_hash_memory_kib == recommended.memory_cost


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLOP_PASSWORD_HASH_TIME_COST", "0"),
        ("PLOP_PASSWORD_HASH_MEMORY_KIB", "1024"),
    ],
)
def test_a_cost_too_cheap_to_be_safe_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name.removeprefix("PLOP_").lower()):
        Settings()


async def test_hashes_of_another_cost_still_verify() -> None:
    cheap = PasswordHashing(1, 1, time_cost=1, memory_kib=8_192)
    dear = PasswordHashing(1, 1)
    try:
        made_cheap = await cheap.hash("correct horse")
        assert made_cheap.startswith("$argon2id$v=19$m=8192,t=1,")
        assert await dear.verify(made_cheap, "correct horse")
        assert not await dear.verify(made_cheap, "wrong horse")
        made_dear = await dear.hash("correct horse")
        assert made_dear.startswith("$argon2id$v=19$m=65536,t=3,")
        assert await cheap.verify(made_dear, "correct horse")
        # An unknown username is checked at the same cost as a known one.
        assert cheap.unknown_user_hash.startswith("$argon2id$v=19$m=8192,t=1,")
        assert dear.unknown_user_hash.startswith("$argon2id$v=19$m=65536,t=3,")
    finally:
        cheap.close()
        dear.close()


@pytest_asyncio.fixture(loop_scope="session")
async def default_cost_server(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """A server hashing at the default cost (the settings' defaults, as above)."""
    defaults = Settings()
    production = {
        "PLOP_PASSWORD_HASH_TIME_COST": str(defaults.password_hash_time_cost),
        "PLOP_PASSWORD_HASH_MEMORY_KIB": str(defaults.password_hash_memory_kib),
    }
    assert production.keys() == CHEAP_PASSWORD_HASHING.keys()
    server = ServerProcess(f"hash-default-{unique_name()}", {**real_env, **production})
    await server.start()
    yield server
    await server.stop()


async def stored_hash(real_env: dict[str, str], username: str) -> str:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(real_env["PLOP_MONGO_URL"])
    try:
        users = client.get_default_database()["users"]
        document = await users.find_one({"username": username})
    finally:
        await client.close()
    assert document is not None
    return str(document["password_hash"])


async def test_servers_hash_at_their_setting_and_accept_either_cost(
    server_a: ServerProcess, default_cost_server: ServerProcess, real_env: dict[str, str]
) -> None:
    cheap, dear = await asyncio.gather(
        sign_up(server_a, "cheap"), sign_up(default_cost_server, "dear")
    )
    assert (await stored_hash(real_env, cheap.username)).startswith("$argon2id$v=19$m=8192,t=1,")
    assert (await stored_hash(real_env, dear.username)).startswith("$argon2id$v=19$m=65536,t=3,")
    # Both servers share the database: each logs in the user the other signed up.
    for server, account in ((server_a, dear), (default_cost_server, cheap)):
        async with http_session(server) as session:
            data = await call(session, LOG_IN, u=account.username, p="correct horse battery")
        assert data["logIn"]["token"]
