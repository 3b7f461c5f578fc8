"""Session tokens: opaque, random, stored hashed in Redis with a TTL.

Only the SHA-256 of a token is stored, so a leaked Redis dump holds no usable token;
that hash is also the session's id wherever one is named (events, logs). Revoking
deletes the key, which takes effect at once on every instance for new requests;
open sockets learn it from the ``SessionEnded`` event or their next check.

Each user's session ids are also listed, by creation time, so that a new session
past the per-user cap ends the oldest ones (their keys deleted in the same script).
The list is pruned of sessions that expired or were revoked whenever it grows, so it
counts live sessions only and never outlives them by more than one TTL.

What the user is shown of a session (``sessions``: created, last seen, User-Agent)
is kept beside it in a hash of its own with the same expiry; last seen is written
at most once a minute per session and instance, so that requests do not each write.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from redis.asyncio import Redis

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

# KEYS: the new session's key, the user's list, the new session's info. ARGV: user
# id, TTL (s), the new session's id, now (ms), the cap, the session key prefix, the
# User-Agent, the info key prefix.
# Stores the session, drops the listed ones that are gone, and ends the oldest live
# ones past the cap (never the new one); returns the ids of those it ended.
_CREATE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[3], 'created', ARGV[4], 'seen', ARGV[4], 'agent', ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[2])
for _, listed in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[6] .. listed) == 0 then
    redis.call('ZREM', KEYS[2], listed)
  end
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
local ended = {}
if over > 0 then
  for _, listed in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if #ended == over then break end
    if listed ~= ARGV[3] then
      redis.call('DEL', ARGV[6] .. listed, ARGV[8] .. listed)
      redis.call('ZREM', KEYS[2], listed)
      table.insert(ended, listed)
    end
  end
end
return ended
"""
# KEYS: the user's list. ARGV: the session key prefix, the info key prefix, the id of
# the session to keep ('' for none), then the ids to end ('*' alone for all listed).
# Ends the user's listed sessions (all but the kept one, or only those named);
# returns the ids of those that were live.
_END = """
local ids = {}
if ARGV[4] == '*' then
  ids = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  for i = 4, #ARGV do table.insert(ids, ARGV[i]) end
end
local ended = {}
for _, listed in ipairs(ids) do
  if listed ~= ARGV[3] then
    if redis.call('DEL', ARGV[1] .. listed) == 1 then table.insert(ended, listed) end
    redis.call('DEL', ARGV[2] .. listed)
    redis.call('ZREM', KEYS[1], listed)
  end
end
return ended
"""
# KEYS: info keys. ARGV[1]: now (ms). Moves "last seen" of those still there (an
# expired session's info is not made again, without its expiry).
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


def _key(token: str) -> str:
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

    def __init__(self, redis: Redis, ttl_seconds: int, max_per_user: int) -> None:
        self._redis = redis
        self._ttl_seconds = ttl_seconds
        self._max_per_user = max_per_user
        self._create = redis.register_script(_CREATE)
        self._end = redis.register_script(_END)
        self._seen = redis.register_script(_SEEN)
        # Session id -> when this process last wrote its "last seen" (monotonic).
        self._seen_written: OrderedDict[str, float] = OrderedDict()

    async def create(self, user_id: str, user_agent: str | None = None) -> NewSession:
        """A new token for the user, valid for the configured TTL; past the per-user
        cap, the user's oldest sessions end in the same step."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        new_id = session_id(token)
        ended = await self._create(
            keys=[_key(token), _USER_PREFIX + user_id, _INFO_PREFIX + new_id],
            args=[
                user_id,
                self._ttl_seconds,
                new_id,
                _now_ms(),
                self._max_per_user,
                _KEY_PREFIX,
                (user_agent or "")[:MAX_USER_AGENT_CHARS],
                _INFO_PREFIX,
            ],
        )
        return NewSession(token, tuple(_text(each) for each in ended))

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
        ended = await self._end(
            keys=[_USER_PREFIX + user_id], args=[_KEY_PREFIX, _INFO_PREFIX, keep, *ids]
        )
        return [_text(each) for each in ended]

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
        await self._seen(keys=[_INFO_PREFIX + each for each in due], args=[_now_ms()])

    async def user_id_for(self, token: str) -> str | None:
        """The user the token belongs to, or None if it is unknown, expired or revoked."""
        if not _plausible(token):
            return None
        user_id = await self._redis.get(_key(token))
        return None if user_id is None else str(user_id)

    async def lookup(self, token: str) -> SessionInfo | None:
        """The token's session with its time left, or None if it is not live."""
        if not _plausible(token):
            return None
        key = _key(token)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            user_id, ttl_millis = await pipe.execute()
        if user_id is None:
            return None
        left = ttl_millis / 1000 if ttl_millis and ttl_millis > 0 else float(self._ttl_seconds)
        return SessionInfo(str(user_id), session_id(token), left)

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
        await self._redis.delete(_KEY_PREFIX + ended_id, _INFO_PREFIX + ended_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _at(millis: float) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)
