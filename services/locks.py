"""Short exclusive locks in Redis, for read-check-write steps the database cannot make atomic.

FerretDB 1.x applies an update by reading the document and writing it back, so two
concurrent invites that each checked the member cap can both pass it. A lock per
room makes "read the members, check the cap, add" one step across every instance;
a lock per message does the same for the writes to a stored message (an edit, a
delete, the relay's published marks), so that none writes back text another
removed.

A lock is ``SET key token NX PX hold``: it expires by itself if its holder dies, and
is released only by its holder (a Lua compare-and-delete).

Each lock is a key of its own, in its own hash slot on a cluster: the scripts that
take or release several at once are sent once per slot (``backends.redis_slots``).
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from backends.redis import KeyValueStore
from backends.redis_slots import positions_by_slot
from errors import Unavailable

KEY_PREFIX = "lock"
# Longer than any step held under a lock takes (a few database round trips), short
# enough that a crashed holder blocks others only briefly.
HOLD_MS = 10_000
# How long a caller waits for a held lock before giving up as UNAVAILABLE: as long as
# a crashed holder's lock can last, so that only a holder stuck past its own hold
# turns a change away (5 s turned deletes away on a loaded machine while a flush of
# published marks held their messages' locks).
WAIT_SECONDS = HOLD_MS / 1000
# First pause between attempts; it doubles, jittered, up to the maximum.
FIRST_PAUSE_SECONDS = 0.005
MAX_PAUSE_SECONDS = 0.1

_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    released = released + redis.call('DEL', key)
  end
end
return released
"""
# Takes each free lock of KEYS (token ARGV[1], hold ARGV[2] ms); returns the 1-based
# positions of those it took.
_TAKE_FREE = """
local taken = {}
for index, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then
    table.insert(taken, index)
  end
end
return taken
"""


class Locks:
    """Named exclusive locks shared by every instance."""

    def __init__(self, redis: KeyValueStore) -> None:
        self._redis = redis
        self._release = redis.register_script(_RELEASE)
        self._take_free = redis.register_script(_TAKE_FREE)

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """Holds the lock for the block; UNAVAILABLE if it stays taken too long."""
        key = f"{KEY_PREFIX}:{name}"
        token = secrets.token_hex(8)
        await self._acquire(key, token)
        try:
            yield
        finally:
            await self._release(keys=[key], args=[token])

    @asynccontextmanager
    async def hold_free(self, names: Sequence[str]) -> AsyncIterator[list[int]]:
        """Holds, for the block, those of the locks that are free now (one round trip,
        no waiting); yields their positions in ``names``."""
        keys = [f"{KEY_PREFIX}:{name}" for name in names]
        token = secrets.token_hex(8)
        taken = await self._taken(keys, token)
        try:
            yield taken
        finally:
            if taken:
                await self._released([keys[position] for position in taken], token)

    async def _taken(self, keys: list[str], token: str) -> list[int]:
        groups = positions_by_slot(self._redis, keys)
        answers = await asyncio.gather(
            *(self._take_free([keys[i] for i in group], [token, HOLD_MS]) for group in groups)
        )
        return sorted(
            group[int(position) - 1]
            for group, answer in zip(groups, answers, strict=True)
            for position in answer
        )

    async def _released(self, keys: list[str], token: str) -> None:
        await asyncio.gather(
            *(
                self._release(keys=[keys[i] for i in group], args=[token])
                for group in positions_by_slot(self._redis, keys)
            )
        )

    async def _acquire(self, key: str, token: str) -> None:
        pause = FIRST_PAUSE_SECONDS
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while not await self._redis.set(key, token, nx=True, px=HOLD_MS):
                    await asyncio.sleep(random.uniform(pause / 2, pause))
                    pause = min(pause * 2, MAX_PAUSE_SECONDS)
        except TimeoutError as exc:
            raise Unavailable("another change of this is under way; retry shortly") from exc
