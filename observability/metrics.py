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
MESSAGES_SENT = Counter(
    "plop_messages_sent_total",
    "Messages stored by sendMessage (a retry that returns the first copy is not counted).",
)
DELIVERIES = Counter(
    "plop_deliveries_total",
    "Results (next/data frames) handed to a socket's send queue; a shared room feed "
    "adds its count once per message, not once per socket.",
)
PUSHES = Counter(
    "plop_push_total",
    "Pushes by provider and final result (after retries).",
    ["provider", "result"],
)
RELAY_BACKLOG = Gauge(
    "plop_relay_backlog",
    "Unpublished messages past their grace period seen by the last relay pass (at most one batch).",
)
KAFKA_CONSUMER_LAG = Gauge(
    "plop_kafka_consumer_lag",
    "Records a Kafka consumer has yet to read (highwater minus position, summed over "
    "its partitions), by topic and consumer (broadcast or group).",
    ["topic", "consumer"],
)
SOCKETS_REFUSED = Counter(
    "plop_sockets_refused_total",
    "WebSockets refused or closed by the server's rules, by reason.",
    ["reason"],
)

# The reasons of plop_sockets_refused_total, all of them: the label set is fixed here.
REFUSED_BAD_TOKEN = "bad_token"  # connection_init without a valid session token
REFUSED_UNAVAILABLE = "unavailable"  # connection_init while a backend was down
REFUSED_INIT_TIMEOUT = "init_timeout"  # no connection_init within the deadline
REFUSED_SOCKET_CAP = "socket_cap"  # over the open sockets per user or per address
REFUSED_SEND_QUEUE_FULL = "send_queue_full"  # a slow consumer over its queue cap
REFUSED_SUBSCRIPTION_LIMIT = "subscription_limit"  # an operation over the per-socket cap
REFUSAL_REASONS = (
    REFUSED_BAD_TOKEN,
    REFUSED_UNAVAILABLE,
    REFUSED_INIT_TIMEOUT,
    REFUSED_SOCKET_CAP,
    REFUSED_SEND_QUEUE_FULL,
    REFUSED_SUBSCRIPTION_LIMIT,
)
for _reason in REFUSAL_REASONS:
    SOCKETS_REFUSED.labels(reason=_reason)  # every reason is exported from the start


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
