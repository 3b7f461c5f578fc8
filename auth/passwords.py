"""Password hashing with argon2id on a few threads of its own, shedding load when full.

Each hash or check costs tens of milliseconds of CPU and 64 MiB by design. On the
shared default thread pool a flood of logIns would queue without end and starve
everything else that uses it; here at most ``threads`` run and ``queue`` more wait,
and any call past that is refused at once (RATE_LIMITED) instead of waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from errors import RateLimited

# argon2id at the library's recommended cost unless the operator sets another.
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_KIB = 65_536
# What a refused caller is told to wait: about what a full queue takes to drain.
BUSY_RETRY_SECONDS = 1.0

T = TypeVar("T")


class PasswordHashing:
    """argon2id hashes and checks on a bounded executor; ``close`` stops its threads.

    A hash carries its own cost, so hashes made at another cost still verify.
    """

    def __init__(
        self,
        threads: int,
        queue: int,
        time_cost: int = DEFAULT_TIME_COST,
        memory_kib: int = DEFAULT_MEMORY_KIB,
    ) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._capacity = threads + queue
        self._taken = 0  # running or waiting; only touched on the event loop
        # Verified against when the username is unknown, so that a wrong username
        # costs as much time as a wrong password and does not reveal which it was
        # (made at this cost: a dearer one would tell them apart too).
        self.unknown_user_hash = self._hasher.hash("plop-no-such-user")

    async def hash(self, password: str) -> str:
        """The argon2id hash of the password."""
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Whether the password matches the hash; never raises for a mismatch."""
        return await self._run(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        if self._taken >= self._capacity:
            raise RateLimited(
                "too many passwords are being checked right now; retry shortly",
                retry_after=BUSY_RETRY_SECONDS,
            )
        loop = asyncio.get_running_loop()
        self._taken += 1
        future = self._executor.submit(work, *args)

        # The slot is free when the work is done, not when its caller stops waiting
        # (a cancelled caller leaves the thread busy until the hash ends).
        def release(_: Future[T]) -> None:
            with suppress(RuntimeError):  # the loop is gone: so is this pool
                loop.call_soon_threadsafe(self._release)

        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        self._taken -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
