"""Store spans: one span per database command, from pymongo's command monitoring.

pymongo calls a listener's ``started`` in the task that sends the command, so the
span it starts is a child of that task's current span: a send's insert is a child
of its ``sendMessage`` operation (the room writer's task inherits the context of
the send that started it), a query's reads children of the query. Commands made
outside any trace (the relay's polls, the clean-ups) record nothing: a root span
per background poll would bury the traces that matter. The embedded store does
not go through pymongo's wire, so it has no store spans.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from pymongo import monitoring

from observability import tracing

# A command as pymongo names it in its events: (server address, request id).
_Key = tuple[Any, int]


class StoreSpans(monitoring.CommandListener):
    """Starts a span when a command is sent and ends it with the answer."""

    def __init__(self) -> None:
        # Commands sent and not yet answered: pymongo reports every one of them as a
        # success or a failure (a dead connection too), which ends its span.
        self._open: dict[_Key, Span] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not trace.get_current_span().get_span_context().is_valid:
            return
        collection = event.command.get(event.command_name)
        attributes: dict[str, str] = {
            "db.system.name": "mongodb",
            "db.namespace": event.database_name,
            "db.operation.name": event.command_name,
        }
        name = event.command_name
        if isinstance(collection, str):
            attributes["db.collection.name"] = collection
            name = f"{event.command_name} {collection}"
        self._open[(event.connection_id, event.request_id)] = tracing.tracer().start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes
        )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        span = self._open.pop((event.connection_id, event.request_id), None)
        if span is not None:
            span.end()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        span = self._open.pop((event.connection_id, event.request_id), None)
        if span is not None:
            span.set_status(StatusCode.ERROR, str(event.failure.get("errmsg", "failed")))
            span.end()


def store_listeners() -> list[monitoring.CommandListener]:
    """The listeners a new database client gets: none while tracing is off."""
    return [StoreSpans()] if tracing.active else []
