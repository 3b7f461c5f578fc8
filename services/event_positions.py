"""One position per stored room event, and how far they are all stored.

The account stream (``live.account_stream``) hands out tokens that say "every
event of this account up to here was given". A position counter alone cannot back
that: a position is taken before its event is stored, so an event may be stored
after one with a higher position (two instances, a slow insert), and a token past it
would skip it for good. So positions come with a watermark:

- ``take(n)`` gives ``n`` consecutive positions and records them as in flight, with
  a deadline (``IN_FLIGHT_SECONDS``) after which they count as abandoned (the taker
  crashed or its write failed for good).
- ``done(first)`` says they are stored (or will never be).
- ``watermark()`` is the highest position below every position still in flight: each
  position at or below it is stored or abandoned, and no event will ever be stored
  with it later. Readers of the store (a replay, a sync) read only up to it.

The counter and the in-flight set live in Redis (one hash slot), so every instance
shares them. An event whose write outlives its deadline could still be stored below
a watermark already handed out; ``IN_FLIGHT_SECONDS`` is far beyond the store
timeout of any write between ``take`` and ``done``, as the locks' hold is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from backends.redis import KeyValueStore
from services.script_batches import ScriptBatches

COUNTER_KEY = "{event-positions}:counter"
IN_FLIGHT_KEY = "{event-positions}:in-flight"
# Far beyond the store timeout of the one write made between take and done.
IN_FLIGHT_SECONDS = 30.0

# KEYS: counter, in-flight. ARGV: count, deadline (ms). The first of the positions.
_TAKE = """
local last = redis.call('INCRBY', KEYS[1], ARGV[1])
local first = last - tonumber(ARGV[1]) + 1
redis.call('ZADD', KEYS[2], first, first .. ':' .. ARGV[2])
return first
"""
# KEYS: counter, in-flight. ARGV: now (ms). Drops abandoned entries from the lowest up.
_WATERMARK = """
while true do
  local lowest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #lowest == 0 then
    return tonumber(redis.call('GET', KEYS[1]) or '0')
  end
  local first, deadline = string.match(lowest[1], '^(%d+):(%d+)$')
  if first ~= nil and tonumber(deadline) >= tonumber(ARGV[1]) then
    return tonumber(first) - 1
  end
  redis.call('ZREM', KEYS[2], lowest[1])
end
"""


class PositionTaker(Protocol):
    """What a writer of room events needs: positions, and saying they are stored."""

    async def take(self, count: int = 1) -> int: ...

    async def done(self, first: int) -> None: ...


class EventPositions:
    """Positions of room events and their watermark, shared by every instance."""

    def __init__(
        self,
        redis: KeyValueStore,
        in_flight_seconds: float = IN_FLIGHT_SECONDS,
        batches: ScriptBatches | None = None,
    ) -> None:
        self._redis = redis
        # Take and done go with the Redis calls made beside them (a room writer's
        # turn): one round trip.
        self._batches = batches or ScriptBatches(redis)
        self._in_flight_ms = int(in_flight_seconds * 1000)
        self._take = redis.register_script(_TAKE)
        self._watermark = redis.register_script(_WATERMARK)

    async def take(self, count: int = 1) -> int:
        """The first of ``count`` consecutive new positions, in flight until ``done``."""
        deadline = int(time.time() * 1000) + self._in_flight_ms
        first = await self._batches.call(
            self._take, [COUNTER_KEY, IN_FLIGHT_KEY], [count, deadline]
        )
        return int(first)

    async def done(self, first: int) -> None:
        """The positions taken from ``first`` on are stored, or never will be."""
        await self._batches.command("ZREMRANGEBYSCORE", IN_FLIGHT_KEY, first, first)

    @asynccontextmanager
    async def taking(self, count: int = 1) -> AsyncIterator[int]:
        """Positions in flight for the block: done when it ends, stored or not."""
        first = await self.take(count)
        try:
            yield first
        finally:
            await self.done(first)

    async def watermark(self) -> int:
        """Every position at or below this is stored or abandoned."""
        now = int(time.time() * 1000)
        return int(await self._watermark(keys=[COUNTER_KEY, IN_FLIGHT_KEY], args=[now]))
