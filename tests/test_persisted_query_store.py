"""The store of persisted queries on Redis and on the embedded stand-in: documents by
hash with their time to live, and the bound on how many are held."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from backends.redis import KeyValueStore, open_redis
from services.persisted_query_store import PersistedQueryStore
from tests.support.persisted import fresh_query, sha256_of

TTL_SECONDS = 600
NAMESPACE_PREFIX = "apq-test-"


@pytest.fixture(params=["real", "embedded"])
def redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        return "memory://"
    url: str = request.getfixturevalue("real_env")["PLOP_REDIS_URL"]
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def redis(redis_url: str) -> AsyncIterator[KeyValueStore]:
    async with open_redis(redis_url, timeout_seconds=10) as client:
        yield client
        # The index has no expiry of its own: each test's namespace goes with it.
        async for key in client.scan_iter(match=f"{{{NAMESPACE_PREFIX}*"):
            await client.delete(key)


def store_on(redis: KeyValueStore, max_documents: int) -> tuple[PersistedQueryStore, str]:
    """A store with no in-process copies (every read goes to Redis), in a namespace of
    its own."""
    namespace = f"{NAMESPACE_PREFIX}{secrets.token_hex(4)}"
    store = PersistedQueryStore(
        redis,
        ttl_seconds=TTL_SECONDS,
        max_documents=max_documents,
        local_documents=0,
        namespace=namespace,
    )
    return store, namespace


async def test_a_stored_document_is_read_back_by_its_hash_with_its_time_to_live(
    redis: KeyValueStore,
) -> None:
    store, namespace = store_on(redis, max_documents=10)
    document = fresh_query()
    sha = sha256_of(document)
    assert await store.get(sha) is None
    await store.put(sha, document)
    assert await store.get(sha) == document
    ttl_ms = await redis.pttl(f"{{{namespace}:apq}}:doc:{sha}")
    assert 0 < ttl_ms <= TTL_SECONDS * 1000


async def test_past_the_bound_the_oldest_registrations_go(redis: KeyValueStore) -> None:
    store, namespace = store_on(redis, max_documents=3)
    documents = [fresh_query() for _ in range(5)]
    for document in documents:
        await store.put(sha256_of(document), document)
    held = [await store.get(sha256_of(document)) for document in documents]
    assert held == [None, None, *documents[2:]]
    assert await redis.zcard(f"{{{namespace}:apq}}:index") == 3
    # Registering a held document again does not push another out.
    await store.put(sha256_of(documents[2]), documents[2])
    assert [await store.get(sha256_of(d)) for d in documents[2:]] == documents[2:]


async def test_this_process_keeps_the_documents_it_used_last(redis: KeyValueStore) -> None:
    namespace = f"{NAMESPACE_PREFIX}{secrets.token_hex(4)}"
    store = PersistedQueryStore(
        redis, ttl_seconds=TTL_SECONDS, max_documents=10, local_documents=1, namespace=namespace
    )
    first, second = fresh_query(), fresh_query()
    await store.put(sha256_of(first), first)
    await store.put(sha256_of(second), second)
    # Only the last one used is held here: the first needs Redis, which still has it.
    assert store.held_here(sha256_of(first)) is None
    assert store.held_here(sha256_of(second)) == second
    await redis.delete(f"{{{namespace}:apq}}:doc:{sha256_of(second)}")
    assert await store.get(sha256_of(second)) == second  # no round trip for it
    assert await store.get(sha256_of(first)) == first
