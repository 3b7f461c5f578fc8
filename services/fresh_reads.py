"""Concurrent reads of the store, batched, and never older than the ask.

When thousands of sockets subscribe at once (a reconnect storm), each reads the
same few rooms. ``FreshReads`` turns the reads asked while one is in flight into
a single read of all their keys, started when that one ends. Every answer comes
from a read that started after it was asked, so a batched answer is exactly as
fresh as a read of its own would have been: a member removed before the ask is
never let in, and there is nothing to invalidate. At most one read is in flight
per ``FreshReads``; under load the batches grow instead of the queue of reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from itertools import islice
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# One read carries at most this many keys (a bound on the query's size).
MAX_BATCH_KEYS = 500


class FreshReads(Generic[K, V]):
    """Reads values by key through ``load``, one batch at a time; None for a key not found."""

    def __init__(self, load: Callable[[list[K]], Awaitable[dict[K, V]]]) -> None:
        self._load = load
        self._waiting: dict[K, asyncio.Future[V | None]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """The value as a read started after this call finds it."""
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_while_asked())
        # Shielded: a caller that gives up cancels neither the read nor its batch.
        return await asyncio.shield(future)

    async def _read_while_asked(self) -> None:
        try:
            while self._waiting:
                batch = dict(islice(self._waiting.items(), MAX_BATCH_KEYS))
                for key in batch:
                    del self._waiting[key]
                await self._read(batch)
        finally:
            self._reader = None

    async def _read(self, batch: dict[K, asyncio.Future[V | None]]) -> None:
        try:
            found = await self._load(list(batch))
        except Exception as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    # Retrieved here, so a batch nobody awaits any more is not reported.
                    future.exception()
            return
        except BaseException:
            for future in batch.values():
                future.cancel()
            raise
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))
