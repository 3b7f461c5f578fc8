"""Session tokens: opaque, random, stored hashed in Redis with a TTL.

Only the SHA-256 of a token is stored, so a leaked Redis dump holds no usable token.
Revoking deletes the key, which takes effect at once on every instance.
"""

from __future__ import annotations

import hashlib
import secrets

from redis.asyncio import Redis

TOKEN_BYTES = 32  # 256 bits of randomness
_KEY_PREFIX = "plop:session:"


def _key(token: str) -> str:
    return _KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()


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
        # Tokens are URL-safe base64: anything else (a lone surrogate in a socket's
        # connection_init, say) is no token, and could not even be hashed.
        if not token or len(token) > 512 or not token.isascii():
            return None
        user_id = await self._redis.get(_key(token))
        return None if user_id is None else str(user_id)

    async def revoke(self, token: str) -> None:
        """Ends the session at once."""
        await self._redis.delete(_key(token))
