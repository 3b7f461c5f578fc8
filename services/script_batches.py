"""Redis calls made at once, sent together in one pipeline.

A connection storm registers thousands of sockets' presence within a second: one
script call each, one pooled connection each, and the pool runs dry ("No
connection available"), refusing sockets. ``ScriptBatches`` queues the calls made
while a pipeline is in flight and sends them as the next one (not a transaction:
each script or command is atomic on its own, as it was alone). Calls keep their
order, so a socket's registration always reaches Redis before its unregistration.
The same makes calls issued together (``asyncio.gather``) one round trip: a room
writer reads its turn and takes its event positions at once.

Scripts go out as ``EVALSHA``: a script object in a pipeline would make redis-py
ask ``SCRIPT EXISTS`` first, a second round trip for every pipeline. A server that
has not loaded a script yet (a first call, a restart, or a master promoted from a
replica after a failover, since Redis does not copy its script cache) refuses it
with NOSCRIPT: the refused calls are sent again, once, after the scripts are loaded
(on every master of a cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from backends.redis import KeyValueStore
from services.batched_calls import BatchedCalls

# One pipeline carries at most this many calls (a bound on one request's size).
MAX_BATCH_CALLS = 1_000


@dataclass(frozen=True, slots=True)
class _Command:
    args: tuple[Any, ...]
    script: AsyncScript | None  # the script an EVALSHA runs, to load it if refused


class ScriptBatches:
    """Runs script calls and commands through one pipeline at a time."""

    def __init__(self, redis: KeyValueStore) -> None:
        self._redis = redis
        self._calls = BatchedCalls(self._send, MAX_BATCH_CALLS)

    async def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's result, as if called alone."""
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        return await self._calls.call(_Command(evalsha, script))

    async def command(self, *command: Any) -> Any:
        """A command's answer (e.g. ``command("MGET", a, b)``), as if sent alone."""
        return await self._calls.call(_Command(command, None))

    async def _results(self, batch: list[_Command]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in batch:
                pipe.execute_command(*command.args)
            return await pipe.execute(raise_on_error=False)

    async def _send(self, batch: list[_Command]) -> list[Any]:
        results = await self._results(batch)
        refused = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        scripts = {id(s): s for i in refused if (s := batch[i].script) is not None}
        if scripts:
            for script in scripts.values():
                await self._redis.script_load(script.script)
            again = await self._results([batch[i] for i in refused])
            for i, result in zip(refused, again, strict=True):
                results[i] = result
        return results
