"""Where automatic persisted queries are kept: Redis, behind a small in-process LRU.

A document is stored under its sha256 (``{<namespace>:apq}:doc:<hash>``) for a fixed
time after its registration; a sorted set (``{<namespace>:apq}:index``, scored by the
time of registration) bounds how many are held at once, the oldest registration
going first. A lookup is one GET, and none at all when this process used the
document lately: a document never changes for its hash, so the LRU needs no
invalidation (it may hold a document a little past its Redis expiry, which only
spares the client a re-registration).
"""

from __future__ import annotations

from collections import OrderedDict

from backends.redis import KeyValueStore

# KEYS[1]: the document's key, KEYS[2]: the index. ARGV: the hash, the document, its
# time to live (ms), the most documents held, and the prefix of documents' keys.
# Expired entries leave the index first; then, if the hash is new and the index is
# full, the oldest registrations go (their documents with them). The evicted keys
# are derived from the index: every key of the store carries one hash tag, so they
# all live in one slot of a Redis Cluster, where a script may reach them.
_REGISTER = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[3])
local most = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
-- Scores rise strictly, so that registrations within one millisecond keep their order.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] and tonumber(last[2]) >= now then now = tonumber(last[2]) + 1 end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local excess = redis.call('ZCARD', KEYS[2]) - most + 1
  if excess > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
    for i = 1, #oldest, 2 do
      redis.call('DEL', ARGV[5] .. oldest[i])
    end
  end
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
return 1
"""


class LocalDocuments:
    """The documents this process used last, by hash (least recently used go first)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._documents: OrderedDict[str, str] = OrderedDict()

    def get(self, sha256_hash: str) -> str | None:
        document = self._documents.get(sha256_hash)
        if document is not None:
            self._documents.move_to_end(sha256_hash)
        return document

    def put(self, sha256_hash: str, document: str) -> None:
        if self._capacity <= 0:
            return
        self._documents[sha256_hash] = document
        self._documents.move_to_end(sha256_hash)
        while len(self._documents) > self._capacity:
            self._documents.popitem(last=False)


class PersistedQueryStore:
    """Documents by their sha256, shared by every instance through Redis."""

    def __init__(
        self,
        redis: KeyValueStore,
        *,
        ttl_seconds: int,
        max_documents: int,
        local_documents: int,
        namespace: str = "plop",
    ) -> None:
        self._redis = redis
        self._ttl_ms = ttl_seconds * 1000
        self._max_documents = max_documents
        self._local = LocalDocuments(local_documents)
        # One hash tag for every key: the eviction script reaches documents by name.
        self._prefix = f"{{{namespace}:apq}}:doc:"
        self._index = f"{{{namespace}:apq}}:index"
        self._register = redis.register_script(_REGISTER)

    def held_here(self, sha256_hash: str) -> str | None:
        """The document if this process holds it; no round trip."""
        return self._local.get(sha256_hash)

    async def get(self, sha256_hash: str) -> str | None:
        """The document stored for the hash, or None; at most one round trip."""
        document = self._local.get(sha256_hash)
        if document is not None:
            return document
        stored = await self._redis.get(self._prefix + sha256_hash)
        if stored is None:
            return None
        document = stored.decode() if isinstance(stored, bytes) else str(stored)
        self._local.put(sha256_hash, document)
        return document

    async def put(self, sha256_hash: str, document: str) -> None:
        """Stores the document (its hash already checked) for the store's time to live."""
        await self._register(
            keys=[self._prefix + sha256_hash, self._index],
            args=[sha256_hash, document, self._ttl_ms, self._max_documents, self._prefix],
        )
        self._local.put(sha256_hash, document)
