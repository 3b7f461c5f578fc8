"""Calls made while a batch is in flight, sent together as the next batch.

The shape shared by the Redis pipelines of ``services.script_batches`` and the
rooms' progress writes of ``services.room_progress``: each call queues an item and
waits for its own answer; one batch at a time is in flight, and what queued
meanwhile goes out as the next, in the order it came. Calls made at once (in one
turn of the event loop, or with ``asyncio.gather``) share a batch, so many small
writes cost one round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

SendBatch = Callable[[list[T]], Awaitable[list[Any]]]
"""Sends a batch; one answer per item, in order (an ``Exception`` for a failed one)."""


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    item: T
    answer: asyncio.Future[Any]


class BatchedCalls(Generic[T]):
    """Queues calls and sends them a batch (at most ``max_batch``) at a time."""

    def __init__(self, send: SendBatch[T], max_batch: int) -> None:
        self._send_batch = send
        self._max_batch = max_batch
        self._queued: list[_Call[T]] = []
        self._sender: asyncio.Task[None] | None = None

    async def call(self, item: T) -> Any:
        """The item's answer, as if it were sent alone."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append(_Call(item, answer))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_while_queued())
        # Shielded: a caller that gives up leaves the batch, and its call, to finish.
        return await asyncio.shield(answer)

    async def _send_while_queued(self) -> None:
        try:
            while self._queued:
                batch = self._queued[: self._max_batch]
                del self._queued[: self._max_batch]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call[T]]) -> None:
        try:
            results = await self._send_batch([call.item for call in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        except BaseException:
            for call in batch:
                call.answer.cancel()
            raise
        for call, result in zip(batch, results, strict=True):
            if call.answer.done():
                continue
            if isinstance(result, Exception):
                call.answer.set_exception(result)
                call.answer.exception()  # retrieved: a caller may have given up
            else:
                call.answer.set_result(result)
