"""Online presence: connections in Redis, ONLINE at the first, OFFLINE after the last.

Each authenticated socket is a member of its user's connection set
(``<namespace>:presence:{user:<user>}:conns``, scored by when it expires unless
refreshed). The instance that holds the socket refreshes it every heartbeat. The
user's state hash (``...{user:<user>}:state``, the same hash slot) says ONLINE or
OFFLINE, and ``<namespace>:presence:due`` says when each user must be checked next.
Every change of a user's state happens inside one Lua script over that user's keys,
so instances racing on the same user (a phone connecting while a sweeper runs) see
one consistent order, and only the caller that made a transition publishes it. The
schedule, a key of every user, is written beside those scripts (on Redis Cluster it
is in another slot): a check that finds the user rescheduled meanwhile leaves the
newer schedule in place.

- The first connection makes a user ONLINE at once.
- Closing the last one schedules a check after a grace period; a reconnect before it
  leaves the user ONLINE and publishes nothing, so a flaky network does not flap.
- An instance that dies stops refreshing: its connections expire, and the next sweep
  (any instance may run it, several at once are safe) publishes OFFLINE, with the
  last heartbeat as lastSeenAt: within TTL plus one sweep interval.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from beanie import PydanticObjectId

from backends.redis import KeyValueStore
from backends.redis_slots import hash_tag
from live.hub import LAGGED, FanoutHub, Inbox
from models import UserDoc
from pubsub import FriendshipChanged, PresenceChanged, presence_route, user_route
from services.friends import FriendService
from services.publisher import EventPublisher
from services.script_batches import ScriptBatches

logger = logging.getLogger(__name__)


class PresenceStatus(StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


ONLINE = PresenceStatus.ONLINE
OFFLINE = PresenceStatus.OFFLINE
SWEEP_BATCH = 200

# KEYS: the user's conns, state. ARGV: now, expires_at, then one or more connections.
# Adds (or refreshes) the connections; returns 1 if the user just came ONLINE.
_CONNECT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
end
redis.call('HSET', KEYS[2], 'heartbeat_at', ARGV[1])
redis.call('HDEL', KEYS[2], 'closed_at')
if redis.call('HGET', KEYS[2], 'status') == 'ONLINE' then
  return 0
end
redis.call('HSET', KEYS[2], 'status', 'ONLINE')
return 1
"""

# KEYS: the user's conns, state. ARGV: connection, now.
# Removes a connection; returns 1 if it was the last (the user is then checked
# after the grace).
_DISCONNECT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[2], 'closed_at', ARGV[2])
  return 1
end
return 0
"""

# KEYS: the user's conns, state. ARGV: now.
# A due user's check: {'live', when the last connection expires}, or {'offline',
# last seen} if this call made them OFFLINE, or {'gone'} if they were already.
_SETTLE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  return {'live', last[2]}
end
if redis.call('HGET', KEYS[2], 'status') ~= 'ONLINE' then
  return {'gone'}
end
local seen = redis.call('HGET', KEYS[2], 'closed_at')
  or redis.call('HGET', KEYS[2], 'heartbeat_at') or ARGV[1]
redis.call('HSET', KEYS[2], 'status', 'OFFLINE', 'last_seen', seen)
redis.call('HDEL', KEYS[2], 'closed_at')
return {'offline', seen}
"""

# KEYS: due. ARGV: user, when.
# Schedules the user's next check (a script only to share the connect's batch).
_SCHEDULE = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 0
"""

# KEYS: due. ARGV: user, now, next check ('' for none).
# After a check: the user's next check, or none; unless a connection or a close
# scheduled them anew meanwhile (their time is then past now), which stands.
_RESCHEDULE = """
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current and tonumber(current) > tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 0
"""


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    status: PresenceStatus
    last_seen_at: datetime | None

    @classmethod
    def from_event(cls, event: PresenceChanged) -> Presence:
        seen = datetime.fromisoformat(event.last_seen_at) if event.last_seen_at else None
        return cls(event.user_id, PresenceStatus(event.status), seen)


def _presence(user_id: str, status: object, seen: object) -> Presence:
    """A user's presence from their stored state hash."""
    if status == ONLINE:
        return Presence(user_id, ONLINE, None)
    return Presence(user_id, OFFLINE, _timestamp(None if seen is None else str(seen)))


class PresenceService:
    """Registers this instance's sockets, and tells friends who is online."""

    def __init__(
        self,
        redis: KeyValueStore,
        publisher: EventPublisher,
        hub: FanoutHub,
        friends: FriendService,
        *,
        ttl_seconds: float,
        heartbeat_seconds: float,
        grace_seconds: float,
        sweep_seconds: float,
        namespace: str = "plop",
    ) -> None:
        # Keys live under the deployment's namespace (its topic prefix): deployments
        # that share a Redis keep their presence apart, as they do their events.
        self._prefix = f"{namespace}:presence:"
        self._due = self._prefix + "due"
        self._redis = redis
        self._publisher = publisher
        self._hub = hub
        self._friends = friends
        self._ttl = ttl_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._grace = grace_seconds
        self.sweep_seconds = sweep_seconds
        self._connect_script = redis.register_script(_CONNECT)
        self._disconnect_script = redis.register_script(_DISCONNECT)
        self._settle_script = redis.register_script(_SETTLE)
        self._schedule_script = redis.register_script(_SCHEDULE)
        self._reschedule_script = redis.register_script(_RESCHEDULE)
        # Sockets connect and close by the thousand in a storm: their calls share
        # pipelines instead of taking a pooled connection each.
        self._scripts = ScriptBatches(redis)
        self._local: dict[str, set[str]] = defaultdict(set)  # user -> this instance's sockets

    def _conns(self, user_id: str) -> str:
        return f"{self._prefix}{hash_tag(f'user:{user_id}')}:conns"

    def _state(self, user_id: str) -> str:
        return f"{self._prefix}{hash_tag(f'user:{user_id}')}:state"

    async def connected(self, user_id: str) -> str:
        """Registers a socket of the user; returns its connection id."""
        connection = secrets.token_hex(8)
        self._local[user_id].add(connection)
        await self._register(user_id, (connection,))
        return connection

    async def _register(self, user_id: str, connections: tuple[str, ...]) -> None:
        """Adds or refreshes connections of one user: a single script call for all of
        them, so a heartbeat costs one call per user, not one per socket."""
        now = time.time()
        # Queued together, so both go in the same batch: the user's own keys in one
        # script, the schedule (a key of all users, in another slot) beside it.
        came_online, _ = await asyncio.gather(
            self._scripts.call(
                self._connect_script,
                [self._conns(user_id), self._state(user_id)],
                [now, now + self._ttl, *connections],
            ),
            self._scripts.call(self._schedule_script, [self._due], [user_id, now + self._ttl]),
        )
        if came_online:
            await self._publisher.publish(PresenceChanged(user_id, ONLINE, None))

    async def disconnected(self, user_id: str, connection: str) -> None:
        """The socket closed; OFFLINE follows after the grace period if it was the last."""
        sockets = self._local.get(user_id)
        if sockets is not None:
            sockets.discard(connection)
            if not sockets:
                del self._local[user_id]
        now = time.time()
        was_last = await self._scripts.call(
            self._disconnect_script, [self._conns(user_id), self._state(user_id)], [connection, now]
        )
        if was_last:
            await self._scripts.call(
                self._schedule_script, [self._due], [user_id, now + self._grace]
            )

    async def heartbeat(self) -> int:
        """Refreshes this instance's sockets so that they do not expire (due once per
        ``heartbeat_seconds``); returns how many failed."""
        # All at once: the refreshes share pipelines (one per batch), and each user's
        # sockets share one call.
        users = [(user_id, tuple(sockets)) for user_id, sockets in self._local.items() if sockets]
        outcomes = await asyncio.gather(
            *(self._register(user_id, sockets) for user_id, sockets in users),
            return_exceptions=True,
        )
        failed = 0
        for (_, sockets), outcome in zip(users, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failed += len(sockets)
                logger.error("presence heartbeat failed", exc_info=outcome)
        return failed

    async def sweep(self) -> int:
        """Publishes OFFLINE for users whose last connection closed or expired (due once
        per ``sweep_seconds``); returns how many went OFFLINE."""
        now = time.time()
        due = [
            str(user_id)
            for user_id in await self._redis.zrangebyscore(
                self._due, "-inf", now, start=0, num=SWEEP_BATCH
            )
        ]
        # Each user's check is a script over their own keys; several instances
        # checking the same user at once are safe (one of them makes the change).
        checks = await asyncio.gather(
            *(
                self._scripts.call(
                    self._settle_script, [self._conns(user_id), self._state(user_id)], [now]
                )
                for user_id in due
            )
        )
        offline: list[tuple[str, str]] = []
        reschedules = []
        for user_id, (kind, *value) in zip(due, checks, strict=True):
            next_check = str(value[0]) if kind == "live" else ""
            if kind == "offline":
                offline.append((user_id, str(value[0])))
            reschedules.append(
                self._scripts.call(self._reschedule_script, [self._due], [user_id, now, next_check])
            )
        await asyncio.gather(*reschedules)
        for user_id, seen in offline:
            last_seen = _timestamp(seen)
            assert last_seen is not None
            await self._publisher.publish(PresenceChanged(user_id, OFFLINE, last_seen.isoformat()))
        return len(offline)

    async def is_connected(self, user_id: str) -> bool:
        """Whether any socket of the user, on any instance, is still alive."""
        return bool(await self._redis.zcount(self._conns(user_id), time.time(), "+inf"))

    async def current(self, user_id: str) -> Presence:
        """The user's presence as stored now."""
        status, seen = await self._redis.hmget(self._state(user_id), ["status", "last_seen"])
        return _presence(user_id, status, seen)

    async def visible_many(
        self, viewer_id: PydanticObjectId, user_ids: Iterable[PydanticObjectId]
    ) -> dict[PydanticObjectId, Presence]:
        """The presence of those users the viewer may see (themself and their friends),
        in one Redis round trip: a page of rooms shows every member's."""
        wanted = set(user_ids)
        others = wanted - {viewer_id}
        visible = [viewer_id] if viewer_id in wanted else []
        if others:
            visible += others & set(await self._friends.friend_ids(viewer_id))
        if not visible:
            return {}
        async with self._redis.pipeline(transaction=False) as pipeline:
            for user_id in visible:
                pipeline.hmget(self._state(str(user_id)), ["status", "last_seen"])
            states = await pipeline.execute()
        return {
            user_id: _presence(str(user_id), status, seen)
            for user_id, (status, seen) in zip(visible, states, strict=True)
        }

    async def visible_to(self, viewer: UserDoc, user_id: PydanticObjectId) -> Presence | None:
        """The user's presence if the viewer is the user or a friend; None otherwise."""
        assert viewer.id is not None
        if user_id != viewer.id and not await self._friends.are_friends(viewer.id, user_id):
            return None
        return await self.current(str(user_id))

    async def friends_presence(self, viewer: UserDoc) -> AsyncGenerator[Presence, None]:
        """Presence changes of the viewer's friends, following friendships as they change."""
        assert viewer.id is not None
        viewer_key = str(viewer.id)
        # Active (counted) once it follows its friends' routes, not before: a change
        # made after the count rose must reach it.
        with self._hub.watching(user_route(viewer_key), subscription=False) as inbox:
            friends: set[str] = set()
            await self._follow_friends(inbox, viewer.id, friends)
            with self._hub.counted():
                while True:
                    event = await inbox.get()
                    if event is LAGGED:
                        # A dropped event may have been a friendship ending or starting, or
                        # a friend's change: follow exactly the friends the store knows
                        # now, and say where each of them stands.
                        await self._follow_friends(inbox, viewer.id, friends)
                        for friend in sorted(friends):
                            yield await self.current(friend)
                    elif isinstance(event, PresenceChanged) and event.user_id in friends:
                        yield Presence.from_event(event)
                    elif isinstance(event, FriendshipChanged) and event.user_id == viewer_key:
                        if event.added and event.friend_id not in friends:
                            friends.add(event.friend_id)
                            self._hub.watch(inbox, presence_route(event.friend_id))
                            # A new friend's presence shows at once, not at their next change.
                            yield await self.current(event.friend_id)
                        elif not event.added and event.friend_id in friends:
                            friends.discard(event.friend_id)
                            self._hub.unwatch(inbox, presence_route(event.friend_id))

    async def _follow_friends(
        self, inbox: Inbox, viewer_id: PydanticObjectId, friends: set[str]
    ) -> None:
        """Makes ``friends`` (and the routes the inbox watches) the viewer's friends as
        stored now."""
        now = {str(friend) for friend in await self._friends.friend_ids(viewer_id)}
        for gone in friends - now:
            self._hub.unwatch(inbox, presence_route(gone))
        for friend in now - friends:
            self._hub.watch(inbox, presence_route(friend))
        friends.clear()
        friends.update(now)
