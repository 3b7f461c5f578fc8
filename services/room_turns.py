"""Turns between the instances writing one room: where the room stands, and who
stores next after a lost range.

A room's writer (``services.room_writer``) knows the next seq of its own instance's
sends; a writer of the same room on another instance learns of them only by losing
an insert to them. The winner, which knows its next seq, would then keep storing
while the loser looks the room up again, and the loser's sends would wait until the
winner's queue drained (seconds, in a busy room). So, in Redis, beside each room:

- ``next``: the seq after the newest one a writer stored. It is written only after
  an insert, so it is never ahead of the store; a writer starts each insert from the
  higher of it and its own next seq, and rarely loses.
- ``turn``: claimed by a writer that lost a range, for at most ``CLAIM_MS``: the
  other instances' writers of the room wait before their next insert until the
  claimant stored (or its claim expired), so a loser stores on its next try.

Neither decides anything: the unique (room_id, seq) index does. Calls go through
``ScriptBatches``, which may share them with other Redis calls made at once (the
writer reads its turn as it takes its event positions: one round trip). With Redis
out of reach, writers go on without turns (a warning is logged), as they would alone.
The keys carry the room id in braces, so that a cluster keeps a room's keys on one
node.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from beanie import PydanticObjectId
from redis.exceptions import RedisError

from backends.redis import KeyValueStore
from services.script_batches import ScriptBatches

logger = logging.getLogger(__name__)

# How long a claim holds the other instances back at most: a lookup of the room's
# newest seq and one insert, with room to spare. A claimant that died frees it then.
CLAIM_MS = 250
# How often a writer held back looks again: well under one insert's round trip.
POLL_SECONDS = 0.002
# How long a room's ``next`` outlives its last insert: rooms not written to any
# more leave nothing behind.
NEXT_TTL_MS = 60_000

# KEYS[1] next, KEYS[2] turn; ARGV[1] the next seq, ARGV[2] this instance's token,
# ARGV[3] next's time to live. Moves next forward only, and ends this instance's
# claim of the turn.
_STORED = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return 0
"""


def _keys(room_id: PydanticObjectId) -> tuple[str, str]:
    return f"room:{{{room_id}}}:next", f"room:{{{room_id}}}:turn"


class RedisRoomTurns:
    """``services.room_writer.RoomTurns`` in Redis, shared by every instance."""

    def __init__(self, redis: KeyValueStore, batches: ScriptBatches | None = None) -> None:
        self._redis = redis
        self._batches = batches or ScriptBatches(redis)
        self._token = secrets.token_hex(8)  # this instance's, in the claims it makes
        self._stored = redis.register_script(_STORED)

    async def turn(self, room_id: PydanticObjectId) -> int | None:
        held, stored_next = await self._read(room_id)
        return None if held else stored_next

    async def wait_turn(self, room_id: PydanticObjectId) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_MS / 1000
        while True:
            held, stored_next = await self._read(room_id)
            if not held or loop.time() >= deadline:
                return stored_next
            await asyncio.sleep(POLL_SECONDS)

    async def _read(self, room_id: PydanticObjectId) -> tuple[bool, int]:
        """Whether another instance holds the room's turn, and the room's next seq."""
        next_key, turn_key = _keys(room_id)
        try:
            turn, stored_next = await self._batches.command("MGET", turn_key, next_key)
        except RedisError:
            logger.warning("a room's turn could not be read; storing without it", exc_info=True)
            return False, 0
        return turn is not None and turn != self._token, int(stored_next or 0)

    async def claim(self, room_id: PydanticObjectId) -> None:
        _, turn_key = _keys(room_id)
        try:
            await self._redis.set(turn_key, self._token, px=CLAIM_MS)
        except RedisError:
            logger.warning("a room's turn could not be claimed", exc_info=True)

    async def stored(self, room_id: PydanticObjectId, next_seq: int) -> None:
        next_key, turn_key = _keys(room_id)
        try:
            await self._batches.call(
                self._stored, [next_key, turn_key], [next_seq, self._token, NEXT_TTL_MS]
            )
        except RedisError:
            logger.warning("a room's next seq could not be recorded", exc_info=True)
