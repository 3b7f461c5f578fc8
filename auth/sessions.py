"""Session tokens: opaque, random, stored hashed in Redis with a TTL.

Only the SHA-256 of a token is stored, so a leaked Redis dump holds no usable token;
that hash is also the session's id wherever one is named (events, logs). Revoking
deletes the key, which takes effect at once on every instance for new requests;
open sockets learn it from the ``SessionEnded`` event or their next check.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

TOKEN_BYTES = 32  # 256 bits of randomness
MAX_TOKEN_CHARS = 512
_KEY_PREFIX = "plop:session:"


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
class SessionInfo:
    """A live session: whose it is, its id, and how long it has left."""

    user_id: str
    session_id: str
    expires_in_seconds: float


class SessionStore:
    """Creates, resolves and revokes session tokens."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl_seconds = ttl_seconds

    async def create(self, user_id: str) -> str:
        """A new token for the user, valid for the configured TTL."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        await self._redis.set(_key(token), user_id, ex=self._ttl_seconds)
        return token

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
