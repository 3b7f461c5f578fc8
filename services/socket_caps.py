"""Caps on the sockets one user, and one client address, hold open on this instance.

Counted in this process only: a socket lives on one instance, and a count in Redis
would outlive a crashed instance's sockets. Behind a load balancer that spreads one
user over N instances, the caps allow N times as many.
"""

from __future__ import annotations

from collections import Counter

from errors import RateLimited


class SocketSlot:
    """One open socket's place in the counts; ``release`` gives it back (idempotent)."""

    __slots__ = ("_caps", "_keys")

    def __init__(self, caps: SocketCaps, keys: tuple[str, str]) -> None:
        self._caps = caps
        self._keys: tuple[str, str] | None = keys

    def release(self) -> None:
        keys, self._keys = self._keys, None
        if keys is not None:
            self._caps._give_back(keys)


class SocketCaps:
    """Counts open sockets per user and per client address, refusing past the caps."""

    def __init__(self, per_user: int, per_address: int) -> None:
        self._per_user = per_user
        self._per_address = per_address
        self._open: Counter[str] = Counter()

    def take(self, user_id: str, address: str) -> SocketSlot:
        """A slot for a new socket; RATE_LIMITED if the user or the address is at its cap."""
        user_key, address_key = f"user:{user_id}", f"address:{address}"
        if self._open[user_key] >= self._per_user:
            raise RateLimited(
                f"too many open connections for this user (at most {self._per_user} "
                "per server); close one first"
            )
        if self._open[address_key] >= self._per_address:
            raise RateLimited(
                f"too many open connections from this address (at most {self._per_address} "
                "per server); close one first"
            )
        self._open[user_key] += 1
        self._open[address_key] += 1
        return SocketSlot(self, (user_key, address_key))

    def _give_back(self, keys: tuple[str, str]) -> None:
        for key in keys:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
