"""Prometheus metrics. Labels come from the schema (root field names), never from
client-chosen strings, so their number stays bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

OPERATIONS = Counter(
    "plop_graphql_operations_total",
    "GraphQL operations by root field, type and outcome.",
    ["field", "type", "outcome"],
)
OPERATION_SECONDS = Histogram(
    "plop_graphql_operation_seconds",
    "Time to answer a query or mutation.",
    ["type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OPEN_WEBSOCKETS = Gauge("plop_websockets_open", "WebSocket connections open now.")
ACTIVE_SUBSCRIPTIONS = Gauge("plop_subscriptions_active", "Subscriptions streaming now.")
ROOM_FEEDS = Gauge("plop_room_feeds_active", "Shared room feeds running now.")
FEED_RENDERINGS = Counter(
    "plop_feed_renderings_total",
    "Messages rendered by shared room feeds (once per feed, however many follow it).",
)


class OperationMetrics(SchemaExtension):
    """Counts every operation and times queries and mutations."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            kind = context.operation_type
        except RuntimeError:  # the document did not parse
            kind = None
        type_label = kind.value if kind is not None else "invalid"
        field = "unknown"
        if context.graphql_document is not None and kind is not None:
            for definition in context.graphql_document.definitions:
                selections = getattr(getattr(definition, "selection_set", None), "selections", ())
                if selections:
                    field = getattr(getattr(selections[0], "name", None), "value", "unknown")
                    break
        result = context.result
        outcome = "error" if (result is None or getattr(result, "errors", None)) else "ok"
        if context.pre_execution_errors:
            outcome = "error"
        OPERATIONS.labels(field=field, type=type_label, outcome=outcome).inc()
        if kind is not OperationType.SUBSCRIPTION:
            OPERATION_SECONDS.labels(type=type_label).observe(time.perf_counter() - started)
