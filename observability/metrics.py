"""Prometheus metrics, defined once and incremented where the thing happens.

Labels come from fixed sets or from the schema (root field names, see
``schema.operation_metrics``), never from client-chosen strings, so their number
stays bounded. Nothing here knows GraphQL, so any layer may count.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
    "Results (next/data frames) handed to a socket (written to its connection or queued "
    "for it); a shared room feed adds its count once per message, not once per socket.",
)
PUSHES = Counter(
    "plop_push_total",
    "Pushes by provider and final result (after retries).",
    ["provider", "result"],
)
PUSHES_TOO_OLD = Counter(
    "plop_push_too_old_total",
    "Messages not pushed because they were older than PLOP_PUSH_MAX_AGE_SECONDS when "
    "their push was decided (a push worker catching up after an outage).",
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
KAFKA_RECORDS_CONSUMED = Counter(
    "plop_kafka_records_consumed_total",
    "Records the broadcast consumers read, by topic and outcome: dropped by their key "
    "(nobody here follows their room or user) or decoded and dispatched. Every instance "
    "reads every record, so its rate is the cluster's event rate (docs/scaling.md).",
    ["topic", "outcome"],
)
# The outcomes of plop_kafka_records_consumed_total.
CONSUMED_DROPPED = "dropped"
CONSUMED_DECODED = "decoded"
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

PERSISTED_QUERIES = Counter(
    "plop_persisted_queries_total",
    "Requests that named their document by its sha256 (or, with trusted documents, any "
    "request), by outcome.",
    ["outcome"],
)

# The outcomes of plop_persisted_queries_total, all of them.
PERSISTED_HIT = "hit"  # a hash alone, answered with the document held for it
PERSISTED_MISS = "miss"  # a hash alone that named nothing held: PERSISTED_QUERY_NOT_FOUND
PERSISTED_REGISTERED = "registered"  # a document sent with its hash, checked and stored
PERSISTED_REFUSED = "refused"  # a wrong hash, an oversize or untrusted document, a flood
PERSISTED_TRUSTED = "trusted"  # a trusted document run (by hash or in full)
PERSISTED_OUTCOMES = (
    PERSISTED_HIT,
    PERSISTED_MISS,
    PERSISTED_REGISTERED,
    PERSISTED_REFUSED,
    PERSISTED_TRUSTED,
)
for _outcome in PERSISTED_OUTCOMES:
    PERSISTED_QUERIES.labels(outcome=_outcome)  # every outcome is exported from the start
