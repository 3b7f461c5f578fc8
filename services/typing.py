"""Who is typing where: ephemeral state shared by every instance in Redis, never stored.

``<namespace>:typing:due`` scores each ``<room>:<user>`` that is typing by when it
expires unless refreshed. Beside it, in the user's own hash slot,
``<namespace>:typing:{user:<user>}:sent`` remembers when the user's typing in each
room was last broadcast, so that a client repeating ``typing: true`` is re-broadcast
at most once per rebroadcast interval, and ``...{user:<user>}:rooms`` lists the rooms
the user types in, so that leaving a room or closing the last socket ends it. Of the
instances that race to end the same typing (a stop, an expiry swept by several
instances at once) exactly one removes it from the schedule, and only that one
publishes ``typing: false``. Delivery is best-effort, like any typing indicator: a
stop that races a refresh may leave the typing to its expiry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from beanie import PydanticObjectId

from backends.redis import KeyValueStore
from backends.redis_slots import hash_tag
from models import RoomDoc, UserDoc
from pubsub import TypingChanged
from services.accounts import AccountService
from services.message_data import UNKNOWN_SENDER_NAME
from services.publisher import EventPublisher
from services.rate_limits import LimitName, RateLimiter

SWEEP_BATCH = 200

# KEYS: the user's sent, the user's rooms. ARGV: room, now, rebroadcast.
# Starts (or refreshes) typing; returns 1 if it is to be broadcast.
_START = """
redis.call('SADD', KEYS[2], ARGV[1])
local sent = redis.call('HGET', KEYS[1], ARGV[1])
if sent and tonumber(ARGV[2]) - tonumber(sent) < tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: the user's sent, the user's rooms. ARGV: room.
# Forgets typing the caller ended.
_FORGET = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 0
"""

# KEYS: due. ARGV: now, batch.
# Takes every typing that expired out of the schedule; returns the members it took
# (so that of several instances sweeping at once, each member goes to one).
_TAKE_EXPIRED = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
end
return due
"""


class TypingService:
    """Starts, refreshes and ends typing, and broadcasts each change to the room."""

    def __init__(
        self,
        redis: KeyValueStore,
        publisher: EventPublisher,
        accounts: AccountService,
        still_connected: Callable[[str], Awaitable[bool]],
        limits: RateLimiter,
        *,
        expiry_seconds: float,
        rebroadcast_seconds: float,
        sweep_seconds: float,
        namespace: str = "plop",
    ) -> None:
        # Under the deployment's namespace, as presence is.
        self._prefix = f"{namespace}:typing:"
        self._due = self._prefix + "due"
        self._redis = redis
        self._publisher = publisher
        self._accounts = accounts
        self._still_connected = still_connected
        self._limits = limits
        self._expiry = expiry_seconds
        self._rebroadcast = rebroadcast_seconds
        self.sweep_seconds = sweep_seconds
        self._start_script = redis.register_script(_START)
        self._forget_script = redis.register_script(_FORGET)
        self._take_expired_script = redis.register_script(_TAKE_EXPIRED)

    def _user_keys(self, user_id: str) -> list[str]:
        """The user's sent times and rooms: one hash slot, named after the user."""
        tag = hash_tag(f"user:{user_id}")
        return [f"{self._prefix}{tag}:sent", f"{self._prefix}{tag}:rooms"]

    async def set_typing(self, room: RoomDoc, user: UserDoc, typing: bool) -> None:
        """The member starts (or keeps) typing in the room, or stops."""
        room_id, user_id = str(room.id), str(user.id)
        await self._limits.hit(LimitName.SET_TYPING, user_id)
        if typing:
            now = time.time()
            broadcast = await self._start_script(
                keys=self._user_keys(user_id), args=[room_id, now, self._rebroadcast]
            )
            # After the user's keys: a stop racing this start then leaves at worst a
            # typing that expires by itself, never one the sweep cannot find.
            await self._redis.zadd(self._due, {f"{room_id}:{user_id}": now + self._expiry})
            if broadcast:
                await self._publish(room_id, user, True, room.members_tag)
        else:
            await self._stop(room_id, user_id, user, room.members_tag)

    async def left(self, room_id: str, user: UserDoc) -> None:
        """The user left the room: their typing there ends."""
        await self._stop(room_id, str(user.id), user, None)

    async def socket_closed(self, user: UserDoc) -> None:
        """A socket of the user closed: if it was their last, their typing ends."""
        user_id = str(user.id)
        # Most sockets close with no typing at all: that costs one read.
        rooms = await self._redis.smembers(self._user_keys(user_id)[1])
        if not rooms or await self._still_connected(user_id):
            return
        for room_id in sorted(map(_text, rooms)):
            await self._stop(room_id, user_id, user, None)

    async def _stop(
        self, room_id: str, user_id: str, user: UserDoc | None, members_tag: str | None
    ) -> None:
        # Whoever removes it from the schedule ended it, and alone says so.
        ended = await self._redis.zrem(self._due, f"{room_id}:{user_id}")
        await self._forget_script(keys=self._user_keys(user_id), args=[room_id])
        if ended:
            await self._publish(room_id, user, False, members_tag, user_id)

    async def _publish(
        self,
        room_id: str,
        user: UserDoc | None,
        typing: bool,
        members_tag: str | None,
        user_id: str | None = None,
    ) -> None:
        await self._publisher.publish(
            TypingChanged(
                room_id=room_id,
                user_id=str(user.id) if user else user_id or "",
                username=user.username if user else "",
                display_name=user.display_name if user else UNKNOWN_SENDER_NAME,
                typing=typing,
                members_tag=members_tag,
            )
        )

    async def sweep(self) -> int:
        """Ends the typing that expired (once, whichever instance sweeps; due once per
        ``sweep_seconds``); returns how many."""
        ended = [
            _text(member)
            for member in await self._take_expired_script(
                keys=[self._due], args=[time.time(), SWEEP_BATCH]
            )
        ]
        pairs = [member.split(":", 1) for member in ended if ":" in member]
        await asyncio.gather(
            *(
                self._forget_script(keys=self._user_keys(user_id), args=[room_id])
                for room_id, user_id in pairs
            )
        )
        users = await self._accounts.get_many(
            [
                PydanticObjectId(user_id)
                for _, user_id in pairs
                if PydanticObjectId.is_valid(user_id)
            ]
        )
        by_id = {str(key): user for key, user in users.items()}
        for room_id, user_id in pairs:
            await self._publish(room_id, by_id.get(user_id), False, None, user_id)
        return len(pairs)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
