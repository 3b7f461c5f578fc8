"""Session tokens: opaque, random, stored hashed in Redis with a TTL.

Only the SHA-256 of a token is stored, so a leaked Redis dump holds no usable token;
that hash is also the session's id wherever one is named (events, logs). Revoking
deletes the key, which takes effect at once on every instance for new requests;
open sockets learn it from the ``SessionEnded`` event or their next check.

Each user's session ids are also listed, by creation time, so that a new session
past the per-user cap ends the oldest ones. The list is pruned of sessions that
expired or were revoked whenever it grows, so it counts live sessions only and never
outlives them by more than one TTL.

Every key here is one session's or one user's, and every command names one key: on
Redis Cluster each is wherever its own hash slot is, and no step needs two slots at
once. The key names are those of single-server deployments, so sessions outlive a
move to a cluster (copied as they are) and an upgrade. The cap is therefore kept in
steps, not in one script: a new session is stored, listed, then the listed sessions
are checked and the oldest past the cap ended (two logIns of the same user at the
same moment may both end the same oldest one: it is reported ended once).

What the user is shown of a session (``sessions``: created, last seen, User-Agent)
is kept beside it in a hash of its own with the same expiry; last seen is written
at most once a minute per session and instance, so that requests do not each write.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from backends.redis import KeyValueStore
from backends.redis_slots import positions_by_slot

TOKEN_BYTES = 32  # 256 bits of randomness
MAX_TOKEN_CHARS = 512
_KEY_PREFIX = "plop:session:"
_USER_PREFIX = "plop:sessions-of:"
_INFO_PREFIX = "plop:session-info:"
MAX_USER_AGENT_CHARS = 200
# How stale a session's "last seen" may be: one write per session and instance per minute.
SEEN_RESOLUTION_SECONDS = 60.0
# Sessions whose last write of "last seen" this process remembers (dropped past this).
SEEN_REMEMBERED = 10_000
SESSION_ID_PATTERN = re.compile(r"[0-9a-f]{64}")
# Sessions whose owner this process remembers (dropped past this), so that a request
# can check its session beside its first Redis step instead of before it.
OWNERS_REMEMBERED = 10_000

# KEYS: the user's list. ARGV: the new session's id, now (ms), TTL (s).
# Lists the new session; returns every listed id, oldest first.
_LIST = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# KEYS: info keys (of one hash slot). ARGV[1]: now (ms). Moves "last seen" of those
# still there (an expired session's info is not made again, without its expiry).
_SEEN = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'seen', ARGV[1]) end
end
return 0
"""


def session_id(token: str) -> str:
    """The session's id: the SHA-256 of its token, safe to send and to log."""
    return hashlib.sha256(token.encode()).hexdigest()


def _plausible(token: str) -> bool:
    # Tokens are URL-safe base64: anything else (a lone surrogate in a socket's
    # connection_init, say) is no token, and could not even be hashed.
    return bool(token) and len(token) <= MAX_TOKEN_CHARS and token.isascii()


def session_key(token: str) -> str:
    """The session's key: it holds the owner's user id while the session is live."""
    return _KEY_PREFIX + session_id(token)


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just created, and the user's older sessions it ended (the cap)."""

    token: str
    ended: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session: whose it is, its id, and how long it has left."""

    user_id: str
    session_id: str
    expires_in_seconds: float


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the user is shown of one of their live sessions."""

    session_id: str
    created_at: datetime
    last_seen_at: datetime
    user_agent: str | None


class SessionStore:
    """Creates, resolves, lists and revokes session tokens."""

    def __init__(self, redis: KeyValueStore, ttl_seconds: int, max_per_user: int) -> None:
        self._redis = redis
        self._ttl_seconds = ttl_seconds
        self._max_per_user = max_per_user
        self._list = redis.register_script(_LIST)
        self._seen = redis.register_script(_SEEN)
        # Session id -> when this process last wrote its "last seen" (monotonic).
        self._seen_written: OrderedDict[str, float] = OrderedDict()
        # Session id -> its owner's user id, as last read here. A session's owner never
        # changes; whether it is still live is never taken from here.
        self._owners: OrderedDict[str, str] = OrderedDict()

    async def create(self, user_id: str, user_agent: str | None = None) -> NewSession:
        """A new token for the user, valid for the configured TTL; past the per-user
        cap, the user's oldest sessions end right after it is stored."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        new_id, now_ms = session_id(token), _now_ms()
        agent = (user_agent or "")[:MAX_USER_AGENT_CHARS]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(_KEY_PREFIX + new_id, user_id, ex=self._ttl_seconds)
            pipe.hset(
                _INFO_PREFIX + new_id, items=["created", now_ms, "seen", now_ms, "agent", agent]
            )
            pipe.expire(_INFO_PREFIX + new_id, self._ttl_seconds)
            await pipe.execute()
        listed = [
            _text(each)
            for each in await self._list(
                keys=[_USER_PREFIX + user_id], args=[new_id, now_ms, self._ttl_seconds]
            )
        ]
        older = [each for each in listed if each != new_id]
        live = await self.live(older)
        if gone := [each for each in older if each not in live]:
            await self._redis.zrem(_USER_PREFIX + user_id, *gone)
        over = len(live) + 1 - self._max_per_user
        if over <= 0:
            return NewSession(token, ())
        oldest = [each for each in older if each in live][:over]
        return NewSession(token, tuple(await self._ended(user_id, "", oldest)))

    async def listed(self, user_id: str) -> list[SessionRecord]:
        """The user's live sessions, newest first."""
        listed = cast(
            list[tuple[bytes | str, float]],
            await self._redis.zrange(_USER_PREFIX + user_id, 0, -1, withscores=True),
        )
        if not listed:
            return []
        ids = [_text(each) for each, _ in listed]
        async with self._redis.pipeline(transaction=False) as pipe:
            for each in ids:
                pipe.get(_KEY_PREFIX + each)
                pipe.hgetall(_INFO_PREFIX + each)
            found = await pipe.execute()
        records: list[SessionRecord] = []
        for index, (each, (_, created_ms)) in enumerate(zip(ids, listed, strict=True)):
            owner, info = found[2 * index], found[2 * index + 1]
            if owner is None or _text(owner) != user_id:
                continue  # expired or revoked: pruned at the user's next new session
            fields = {_text(key): _text(value) for key, value in info.items()}
            agent = fields.get("agent") or None
            seen_ms = float(fields.get("seen", created_ms))
            records.append(SessionRecord(each, _at(created_ms), _at(seen_ms), agent))
        records.sort(key=lambda record: (record.created_at, record.session_id), reverse=True)
        return records

    async def owner_of(self, session_id: str) -> str | None:
        """The user whose live session this id names; None if it names none."""
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            return None
        owner = await self._redis.get(_KEY_PREFIX + session_id)
        return None if owner is None else _text(owner)

    async def end(self, user_id: str, session_ids: Iterable[str]) -> list[str]:
        """Ends these sessions of the user; returns those that were live."""
        named = [each for each in session_ids if each != "*"]
        if not named:
            return []
        return await self._ended(user_id, "", named)

    async def end_all(self, user_id: str, keep: str | None = None) -> list[str]:
        """Ends every session of the user but ``keep``; returns those that were live."""
        return await self._ended(user_id, keep or "", ["*"])

    async def _ended(self, user_id: str, keep: str, ids: list[str]) -> list[str]:
        if ids == ["*"]:
            listed = cast(list[str], await self._redis.zrange(_USER_PREFIX + user_id, 0, -1))
            ids = [_text(each) for each in listed]
        ids = [each for each in dict.fromkeys(ids) if each != keep]
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for each in ids:
                pipe.delete(_KEY_PREFIX + each)
                pipe.delete(_INFO_PREFIX + each)
            pipe.zrem(_USER_PREFIX + user_id, *ids)
            deleted = await pipe.execute()
        return [each for index, each in enumerate(ids) if deleted[2 * index] == 1]

    async def seen(self, session_ids: Iterable[str]) -> None:
        """Records that the sessions are in use now (at most once a minute each)."""
        now = time.monotonic()
        due = [
            each
            for each in dict.fromkeys(session_ids)
            if now - self._seen_written.get(each, -SEEN_RESOLUTION_SECONDS)
            >= SEEN_RESOLUTION_SECONDS
        ]
        if not due:
            return
        for each in due:
            self._seen_written.pop(each, None)
            self._seen_written[each] = now
        while len(self._seen_written) > SEEN_REMEMBERED:
            self._seen_written.popitem(last=False)
        keys = [_INFO_PREFIX + each for each in due]
        now_ms = _now_ms()
        await asyncio.gather(
            *(
                self._seen(keys=[keys[i] for i in group], args=[now_ms])
                for group in positions_by_slot(self._redis, keys)
            )
        )

    async def user_id_for(self, token: str) -> str | None:
        """The user the token belongs to, or None if it is unknown, expired or revoked."""
        if not _plausible(token):
            return None
        user_id = await self._redis.get(session_key(token))
        if user_id is None:
            return None
        self._owners[session_id(token)] = str(user_id)
        while len(self._owners) > OWNERS_REMEMBERED:
            self._owners.popitem(last=False)
        return str(user_id)

    def known_owner(self, token: str) -> str | None:
        """The user whose session the token was when this process last read it, without
        asking Redis: the caller still checks that the session is live."""
        return self._owners.get(session_id(token)) if _plausible(token) else None

    def forget_owner(self, token: str) -> None:
        """The token's session was found ended."""
        self._owners.pop(session_id(token), None)

    async def lookup(self, token: str) -> SessionInfo | None:
        """The token's session with its time left, or None if it is not live."""
        return (await self.lookup_many([token])).get(token)

    async def lookup_many(self, tokens: Iterable[str]) -> dict[str, SessionInfo]:
        """The live sessions among the tokens, by token, in one round trip."""
        ids = {token: session_id(token) for token in dict.fromkeys(tokens) if _plausible(token)}
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for each in ids.values():
                pipe.get(_KEY_PREFIX + each)
                pipe.pttl(_KEY_PREFIX + each)
            found = await pipe.execute()
        live: dict[str, SessionInfo] = {}
        for index, (token, each) in enumerate(ids.items()):
            user_id, ttl_millis = found[2 * index], found[2 * index + 1]
            if user_id is None:
                continue
            left = ttl_millis / 1000 if ttl_millis and ttl_millis > 0 else float(self._ttl_seconds)
            live[token] = SessionInfo(_text(user_id), each, left)
        return live

    async def live(self, session_ids: Iterable[str]) -> set[str]:
        """Those of the sessions that are still live, in one round trip."""
        ids = list(dict.fromkeys(session_ids))
        if not ids:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for each in ids:
                pipe.exists(_KEY_PREFIX + each)
            found = await pipe.execute()
        return {each for each, exists in zip(ids, found, strict=True) if exists}

    async def revoke(self, token: str) -> None:
        """Ends the session at once."""
        ended_id = session_id(token)
        # Two keys, each in its own slot on a cluster: one DEL each.
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_KEY_PREFIX + ended_id)
            pipe.delete(_INFO_PREFIX + ended_id)
            await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _at(millis: float) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)
