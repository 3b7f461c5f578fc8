"""Round trips to the database and to Redis, counted by the operation that made them.

Each is counted under the root field of the GraphQL operation whose resolvers made
it (``none`` for background work: presence heartbeats, the relay, the push worker),
so a page of rooms shows what it costs whatever else the process does meanwhile.
The operation's field travels in a context variable, which the tasks its resolvers
start inherit; ``schema.operation_metrics.RoundTripScope`` sets it for each
execution. Field labels come from the schema, so their number stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar

from prometheus_client import Counter
from pymongo import monitoring
from redis.asyncio import Connection

BACKEND_COMMANDS = Counter(
    "plop_backend_commands_total",
    "Round trips to a backend, by the root field of the operation that made them.",
    ["backend", "field"],
)
NO_OPERATION = "none"
_OPERATION_FIELD: ContextVar[str] = ContextVar("plop_operation_field", default=NO_OPERATION)


def count_round_trip(backend: str) -> None:
    BACKEND_COMMANDS.labels(backend=backend, field=_OPERATION_FIELD.get()).inc()


class MongoRoundTrips(monitoring.CommandListener):
    """Counts every command sent to the database (pymongo calls it in the caller's task)."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        count_round_trip("mongo")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class CountedRedisConnection(Connection):
    """A Redis connection that counts each write of commands: a pipeline is one."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        count_round_trip("redis")
        await super().send_packed_command(command, check_health)


@contextmanager
def counting_under(field: str) -> Iterator[None]:
    """Round trips made inside the block (and in tasks it starts) count under ``field``."""
    token = _OPERATION_FIELD.set(field)
    try:
        yield
    finally:
        # A subscription's steps may end in another context than they began in.
        with suppress(ValueError):
            _OPERATION_FIELD.reset(token)
