"""Password hashing with argon2id, off the event loop (hashing is CPU work by design)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost


async def hash_password(password: str) -> str:
    """The argon2id hash of the password."""
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches the hash; never raises for a mismatch."""

    def verify() -> bool:
        try:
            return _HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


# A valid hash to verify against when the username is unknown, so that a wrong
# username costs as much time as a wrong password and does not reveal which it was.
DUMMY_PASSWORD_HASH = _HASHER.hash("plop-no-such-user")
