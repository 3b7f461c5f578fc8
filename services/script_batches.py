"""Redis script calls made at once, sent together in one pipeline.

A connection storm registers thousands of sockets' presence within a second: one
script call each, one pooled connection each, and the pool runs dry ("No
connection available"), refusing sockets. ``ScriptBatches`` queues the calls made
while a pipeline is in flight and sends them as the next one (not a transaction:
each script is atomic on its own, as it was alone). Calls keep their order, so a
socket's registration always reaches Redis before its unregistration.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

# One pipeline carries at most this many calls (a bound on one request's size).
MAX_BATCH_CALLS = 1_000


@dataclass(frozen=True, slots=True)
class _Call:
    script: AsyncScript
    keys: list[str]
    args: list[Any]
    answer: asyncio.Future[Any]


class ScriptBatches:
    """Runs script calls through one pipeline at a time."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """The script's result, as if called alone."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append(_Call(script, keys, args, answer))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_while_queued())
        # Shielded: a caller that gives up leaves the batch, and its call, to finish.
        return await asyncio.shield(answer)

    async def _send_while_queued(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:MAX_BATCH_CALLS]
                del self._queued[:MAX_BATCH_CALLS]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for call in batch:
                    await call.script(keys=call.keys, args=call.args, client=pipe)
                results = await pipe.execute(raise_on_error=False)
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
