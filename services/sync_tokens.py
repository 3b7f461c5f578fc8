"""Sync tokens: where an account's stream stands, as a short opaque string.

A token is a ``Cursor``: every room event of the account with a position at or
below ``upto`` was given, and so were the positions in ``also`` (given live, above
``upto``, before the stream could tell that nothing below them was missing). Its
size is bounded whatever the number of rooms: ``also`` holds at most
``MAX_ALSO`` positions (the account stream catches up, moving ``upto``, before it
would hold more). ``at`` is when ``upto`` was read: a token older than the
retention of the room event log is expired.

The token is bound to its user and signed (HMAC-SHA256, a key every instance shares
in Redis), so another user's token or an edited one is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

from backends.redis import KeyValueStore
from errors import BadUserInput, Forbidden
from live.account_cursor import MAX_ALSO, Cursor, SyncTokenExpired

KEY_NAME = "{event-positions}:token-key"
PREFIX = "s1."
MAX_TOKEN_CHARS = 512
_MAC_BYTES = 12


class SyncTokens:
    """Encodes and checks tokens with the deployment's shared key."""

    def __init__(self, redis: KeyValueStore, retention_seconds: float) -> None:
        self._redis = redis
        self._retention_seconds = retention_seconds
        self._key: bytes | None = None

    async def _shared_key(self) -> bytes:
        if self._key is None:
            await self._redis.set(KEY_NAME, secrets.token_hex(32), nx=True)
            stored = await self._redis.get(KEY_NAME)
            if not stored:
                raise RuntimeError("the sync token key could not be read back")
            self._key = bytes.fromhex(str(stored))
        return self._key

    async def encode(self, user_id: str, cursor: Cursor) -> str:
        if len(cursor.also) > MAX_ALSO:
            raise ValueError("a cursor holds too many positions for a token")
        also = ",".join(f"{pos - cursor.upto:x}" for pos in sorted(cursor.also))
        body = f"{user_id}.{cursor.upto:x}.{int(cursor.at):x}.{also}".encode()
        mac = hmac.new(await self._shared_key(), body, hashlib.sha256).digest()[:_MAC_BYTES]
        token = PREFIX + _b64(body) + "." + _b64(mac)
        assert len(token) <= MAX_TOKEN_CHARS
        return token

    async def decode(self, user_id: str, token: str) -> Cursor:
        """The cursor of the viewer's token. BAD_USER_INPUT for anything but a token
        this deployment made (SYNC_TOKEN_EXPIRED past retention); FORBIDDEN for
        another user's."""
        if len(token) > MAX_TOKEN_CHARS or not token.startswith(PREFIX):
            raise BadUserInput("not a sync token")
        try:
            encoded_body, encoded_mac = token[len(PREFIX) :].split(".")
            body, mac = _unb64(encoded_body), _unb64(encoded_mac)
        except (ValueError, binascii.Error):
            raise BadUserInput("not a sync token") from None
        expected = hmac.new(await self._shared_key(), body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected[:_MAC_BYTES]):
            raise BadUserInput("not a sync token")
        try:
            owner, upto, at, also = body.decode().split(".")
            cursor = Cursor(
                upto=int(upto, 16),
                at=float(int(at, 16)),
                also=frozenset(int(upto, 16) + int(each, 16) for each in also.split(",") if each),
            )
        except ValueError:
            raise BadUserInput("not a sync token") from None
        if owner != user_id:
            raise Forbidden("this sync token belongs to another account")
        if time.time() - cursor.at > self._retention_seconds:
            raise SyncTokenExpired("this sync token has expired: start over with sync")
        return cursor


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
