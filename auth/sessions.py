"""Session tokens: opaque, random, stored hashed in Redis with a TTL.

Only the SHA-256 of a token is stored, so a leaked Redis dump holds no usable token;
that hash is also the session's id wherever one is named (events, logs). Revoking
deletes the key, which takes effect at once on every instance for new requests;
open sockets learn it from the ``SessionEnded`` event or their next check.

Each user's session ids are also listed, by creation time, so that a new session
past the per-user cap ends the oldest ones (their keys deleted in the same script).
The list is pruned of sessions that expired or were revoked whenever it grows, so it
counts live sessions only and never outlives them by more than one TTL.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

TOKEN_BYTES = 32  # 256 bits of randomness
MAX_TOKEN_CHARS = 512
_KEY_PREFIX = "plop:session:"
_USER_PREFIX = "plop:sessions-of:"

# KEYS: the new session's key, the user's list. ARGV: user id, TTL (s), the new
# session's id, now (ms), the cap, the session key prefix.
# Stores the session, drops the listed ones that are gone, and ends the oldest live
# ones past the cap (never the new one); returns the ids of those it ended.
_CREATE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
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
      redis.call('DEL', ARGV[6] .. listed)
      redis.call('ZREM', KEYS[2], listed)
      table.insert(ended, listed)
    end
  end
end
return ended
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


class SessionStore:
    """Creates, resolves and revokes session tokens."""

    def __init__(self, redis: Redis, ttl_seconds: int, max_per_user: int) -> None:
        self._redis = redis
        self._ttl_seconds = ttl_seconds
        self._max_per_user = max_per_user
        self._create = redis.register_script(_CREATE)

    async def create(self, user_id: str) -> NewSession:
        """A new token for the user, valid for the configured TTL; past the per-user
        cap, the user's oldest sessions end in the same step."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        ended = await self._create(
            keys=[_key(token), _USER_PREFIX + user_id],
            args=[
                user_id,
                self._ttl_seconds,
                session_id(token),
                time.time_ns() // 1_000_000,
                self._max_per_user,
                _KEY_PREFIX,
            ],
        )
        return NewSession(token, tuple(_text(each) for each in ended))

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
        await self._redis.delete(_key(token))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
