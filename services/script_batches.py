"""Redis script calls made at once, sent together in one pipeline.

A connection storm registers thousands of sockets' presence within a second: one
script call each, one pooled connection each, and the pool runs dry ("No
connection available"), refusing sockets. ``ScriptBatches`` queues the calls made
while a pipeline is in flight and sends them as the next one (not a transaction:
each script is atomic on its own, as it was alone). Calls keep their order, so a
socket's registration always reaches Redis before its unregistration.

On a cluster the pipeline goes out as one batch per node. A master promoted from a
replica after a failover has no scripts loaded (Redis does not copy its script
cache): the calls it refused with NOSCRIPT are sent again, once, after the scripts
are loaded on every master (a lone script call does the same by itself).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from backends.redis import KeyValueStore

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

    def __init__(self, redis: KeyValueStore) -> None:
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

    async def _results(self, batch: list[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in batch:
                # A cluster's pipeline is no RedisCluster, but the script takes it.
                await call.script(keys=call.keys, args=call.args, client=cast(Any, pipe))
            return await pipe.execute(raise_on_error=False)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            results = await self._results(batch)
            refused = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if refused:
                for script in {id(batch[i].script): batch[i].script for i in refused}.values():
                    await self._redis.script_load(script.script)
                again = await self._results([batch[i] for i in refused])
                for i, result in zip(refused, again, strict=True):
                    results[i] = result
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
