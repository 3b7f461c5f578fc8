"""Round trips to the database and to Redis, counted by the operation that made them.

Each is counted under the root field of the GraphQL operation whose resolvers made
it (``none`` for background work: presence heartbeats, the relay, the push worker),
so a page of rooms shows what it costs whatever else the process does meanwhile.
The operation's field travels in a context variable, which the tasks its resolvers
start inherit. Field labels come from the schema, so their number stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import suppress
from contextvars import ContextVar

from graphql import FieldNode, OperationDefinitionNode
from prometheus_client import Counter
from pymongo import monitoring
from redis.asyncio import Connection
from strawberry.extensions import SchemaExtension

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


def _root_field(operation: OperationDefinitionNode | None) -> str:
    if operation is not None:
        for selection in operation.selection_set.selections:
            if isinstance(selection, FieldNode):
                return selection.name.value
    return "unknown"


class RoundTripScope(SchemaExtension):
    """Counts the round trips of an operation's execution under its root field."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        operation = None
        if document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            operation = next(
                (
                    op
                    for op in operations
                    if context.operation_name is None
                    or (op.name is not None and op.name.value == context.operation_name)
                ),
                None,
            )
        token = _OPERATION_FIELD.set(_root_field(operation))
        try:
            yield
        finally:
            # A subscription's steps may end in another context than they began in.
            with suppress(ValueError):
                _OPERATION_FIELD.reset(token)
