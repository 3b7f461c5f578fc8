"""Prometheus metrics. Labels come from the schema (root field names), never from
client-chosen strings, so their number stays bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    get_operation_ast,
)
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
# One sample per process, 1, labelled with its instance id: tells which process answered.
INSTANCE = Gauge("plop_instance_info", "This process's instance id.", ["instance_id"])
OPEN_WEBSOCKETS = Gauge("plop_websockets_open", "WebSocket connections open now.")
ACTIVE_SUBSCRIPTIONS = Gauge("plop_subscriptions_active", "Subscriptions streaming now.")
ROOM_FEEDS = Gauge("plop_room_feeds_active", "Shared room feeds running now.")
FEED_RENDERINGS = Counter(
    "plop_feed_renderings_total",
    "Messages rendered by shared room feeds (once per feed, however many follow it).",
)


# The label of a root field the schema does not have (a typo, a probe, a fragment
# that selects nothing): one series for them all, whatever the client wrote.
UNKNOWN_FIELD = "unknown"
# Fragment spreads followed to find an operation's first field; a cycle is a
# validation error, and metrics also count documents that failed validation.
MAX_FRAGMENT_HOPS = 8
META_FIELDS = frozenset({"__typename", "__schema", "__type"})


def root_field_label(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> str:
    """The operation's first root field, if the schema has that field; else "unknown".

    The label set is bounded by the schema: a client's field, fragment or operation
    name never becomes a label of its own.
    """
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return UNKNOWN_FIELD
    root = schema.get_root_type(operation.operation)
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    selections = operation.selection_set.selections
    for _ in range(MAX_FRAGMENT_HOPS):
        if not selections:
            break
        first = selections[0]
        if isinstance(first, FieldNode):
            name = first.name.value
            known = name in META_FIELDS or (root is not None and name in root.fields)
            return name if known else UNKNOWN_FIELD
        if isinstance(first, InlineFragmentNode):
            selections = first.selection_set.selections
        elif isinstance(first, FragmentSpreadNode) and first.name.value in fragments:
            selections = fragments[first.name.value].selection_set.selections
        else:
            break
    return UNKNOWN_FIELD


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
        field = UNKNOWN_FIELD
        if context.graphql_document is not None and kind is not None:
            field = root_field_label(
                context.schema._schema, context.graphql_document, context.operation_name
            )
        result = context.result
        outcome = "error" if (result is None or getattr(result, "errors", None)) else "ok"
        if context.pre_execution_errors:
            outcome = "error"
        OPERATIONS.labels(field=field, type=type_label, outcome=outcome).inc()
        if kind is not OperationType.SUBSCRIPTION:
            OPERATION_SECONDS.labels(type=type_label).observe(time.perf_counter() - started)
