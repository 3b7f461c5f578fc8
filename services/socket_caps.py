"""Caps on the sockets one user, and one client address, hold open on this instance.

A socket counts against its client address from the moment it opens, before its
connection_init (each may wait up to the init deadline doing nothing), and against
its user once connection_init is accepted; both counts end when it closes.

Counted in this process only: a socket lives on one instance, and a count in Redis
would outlive a crashed instance's sockets. Behind a load balancer that spreads one
user over N instances, the caps allow N times as many.
"""

from __future__ import annotations

from collections import Counter

from errors import RateLimited


class SocketSlot:
    """One open socket's place in the counts; ``release`` gives it back (idempotent)."""

    __slots__ = ("_caps", "_keys", "admitted")

    def __init__(self, caps: SocketCaps, address_key: str) -> None:
        self._caps = caps
        self._keys: list[str] | None = [address_key]
        self.admitted = False  # counted against a user too (connection_init accepted)

    def admit(self, user_id: str) -> None:
        """Counts the socket against its user as well; RATE_LIMITED past the user's cap."""
        assert not self.admitted, "a socket is admitted once (one connection_init)"
        if self._keys is None:
            return  # closed meanwhile: nothing left to count
        user_key = self._caps._take(f"user:{user_id}", self._caps.per_user, "for this user")
        self._keys.append(user_key)
        self.admitted = True

    def release(self) -> None:
        keys, self._keys = self._keys, None
        if keys is not None:
            self._caps._give_back(keys)


class SocketCaps:
    """Counts open sockets per user and per client address, refusing past the caps."""

    def __init__(self, per_user: int, per_address: int) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self._open: Counter[str] = Counter()

    def open(self, address: str) -> SocketSlot:
        """A slot for a socket that just opened; RATE_LIMITED if its address is at its cap."""
        address_key = self._take(f"address:{address}", self.per_address, "from this address")
        return SocketSlot(self, address_key)

    def _take(self, key: str, cap: int, whose: str) -> str:
        if self._open[key] >= cap:
            raise RateLimited(
                f"too many open connections {whose} (at most {cap} per server); close one first"
            )
        self._open[key] += 1
        return key

    def _give_back(self, keys: list[str]) -> None:
        for key in keys:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]
