"""Traces: OpenTelemetry spans for one message's path, across instances.

A send is one trace: the GraphQL operation (``schema.operation_spans``), its store
commands (``observability.store_spans``), the publish (``pubsub.kafka``,
``pubsub.memory``), and on every instance that consumes it the consume
(``live.hub.FanoutConsumer``) and each shared feed's delivery
(``live.room_feeds.RoomFeed``). The publish writes the W3C trace context
(``traceparent``, ``tracestate``) into the Kafka record's headers and the consume
starts its span as a child of what it reads there, so the spans of instance A and
instance B share one trace id. The embedded broker hands the context over in the
process.

Off unless ``PLOP_OTLP_ENDPOINT`` is set. Off means free: the layers test the
module's ``active`` flag, set once at start-up, before building anything, so no span,
context or header exists per request or per event. No global provider is installed
either: Plop's spans come from its own provider, which the runtime shuts down (and so
flushes) when the process stops.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

# The instrumentation scope every Plop span is recorded under.
SCOPE = "plop"
# The OTLP/HTTP path of traces under a collector's base URL (Jaeger, Tempo and the
# otel-collector all serve it on port 4318).
TRACES_PATH = "/v1/traces"
# Consumed messages whose context a feed's delivery may still ask for. A feed
# delivers a consumed message within moments; this bounds the table when feeds lag
# or when nobody delivers (a message consumed for a room list only).
DELIVERY_PARENTS = 4_096
# One export's wait for the collector (the SDK's default is 10 s). Exports run on the
# SDK's own thread; this bounds how long spans pile up behind a silent collector.
EXPORT_TIMEOUT_SECONDS = 5.0
# How long a stop waits for the last spans to be taken: a small share of
# PLOP_SHUTDOWN_SECONDS, whatever the collector does.
FLUSH_SECONDS = 2.0
FLUSH_THREAD = "plop-trace-flush"

# Read on the hot paths before anything else; set only by ``install``/``uninstall``.
active = False
_provider: TracerProvider | None = None
_tracer: Tracer = trace.NoOpTracer()
_propagator = TraceContextTextMapPropagator()
# The trace context a broker read with the event it is yielding: the consuming task
# (``FanoutConsumer``) iterates the broker's generator, so both share this variable.
_received: ContextVar[otel_context.Context | None] = ContextVar("plop_received_trace", default=None)
# Consume spans' contexts by message id, for the feeds that deliver those messages.
_delivery_parents: OrderedDict[str, otel_context.Context] = OrderedDict()


def traces_url(endpoint: str) -> str:
    """``http://collector:4318`` -> ``http://collector:4318/v1/traces`` (a URL that
    already names the path is kept)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def install(processor: SpanProcessor, service_name: str, instance_id: str) -> TracerProvider:
    """Records Plop's spans through ``processor`` from now on."""
    global active, _provider, _tracer
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.instance.id": instance_id})
    )
    provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer(SCOPE)
    active = True
    return provider


def _detach() -> TracerProvider | None:
    """Stops recording; returns the provider that was recording, for its shutdown."""
    global active, _provider, _tracer
    active = False
    provider, _provider, _tracer = _provider, None, trace.NoOpTracer()
    _delivery_parents.clear()
    return provider


def uninstall() -> None:
    """Stops recording, and flushes and shuts down what ``install`` set up."""
    if (provider := _detach()) is not None:
        provider.shutdown()


async def _flush_within(provider: TracerProvider, seconds: float) -> None:
    """Shuts the provider down (exporting what it holds) in a thread of its own,
    waiting for it at most ``seconds``: the SDK's shutdown blocks until the collector
    answers, and a collector that is down must not hold up the process's stop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def shut_down() -> None:
        try:
            provider.shutdown()
        finally:
            with suppress(RuntimeError):  # the loop closed first: nobody waits
                loop.call_soon_threadsafe(finish)

    # A daemon thread: one still waiting on a silent collector does not keep the
    # process alive (the default executor's threads would be joined at exit).
    threading.Thread(target=shut_down, name=FLUSH_THREAD, daemon=True).start()
    with suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await done


@asynccontextmanager
async def exporting(
    endpoint: str | None, service_name: str, instance_id: str
) -> AsyncIterator[None]:
    """Exports spans over OTLP/HTTP to ``endpoint`` inside the block, and what is left
    of them when it ends (for at most ``FLUSH_SECONDS``); nothing at all when None."""
    if endpoint is None:
        yield
        return
    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=EXPORT_TIMEOUT_SECONDS)
    install(BatchSpanProcessor(exporter), service_name, instance_id)
    try:
        yield
    finally:
        if (provider := _detach()) is not None:
            await _flush_within(provider, FLUSH_SECONDS)


def tracer() -> Tracer:
    """Plop's tracer (a no-op one while tracing is off)."""
    return _tracer


@contextmanager
def publishing(
    topic: str, key: str, event_type: str, system: str
) -> Iterator[list[tuple[str, bytes]]]:
    """The publish span of one event, current inside the block; yields the record
    headers that carry its context to the consumers."""
    with _tracer.start_as_current_span(
        f"publish {topic}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": key,
            "plop.event.type": event_type,
        },
    ):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        yield [(name, value.encode()) for name, value in carrier.items()]


def received_headers(headers: Sequence[tuple[str, bytes]] | None) -> None:
    """Keeps the trace context of a consumed record's headers for its consume span."""
    carrier = {name: value.decode("latin-1") for name, value in headers or ()}
    _received.set(_propagator.extract(carrier) if carrier else None)


def received_context(context: otel_context.Context | None) -> None:
    """Keeps a context handed over in the process (the embedded broker's)."""
    _received.set(context)


def current_context() -> otel_context.Context:
    return otel_context.get_current()


@contextmanager
def consuming(topic: str, event_type: str, message_id: str | None) -> Iterator[Span]:
    """The consume span of the event a broker just yielded, a child of the publish
    span whose context came with it (a root when none did); a message's context is
    kept for the feeds that deliver it."""
    parent = _received.get()
    with _tracer.start_as_current_span(
        f"consume {topic}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "plop.event.type": event_type,
        },
    ) as span:
        if message_id is not None:
            _delivery_parents[message_id] = otel_context.get_current()
            if len(_delivery_parents) > DELIVERY_PARENTS:
                _delivery_parents.popitem(last=False)
        yield span


@contextmanager
def delivering(message_id: str, room_id: str) -> Iterator[Span]:
    """One feed's delivery of one message (its rendering and hand-out to every
    follower), a child of the message's consume span when this instance consumed it;
    a message refilled from the store starts a trace of its own."""
    with _tracer.start_as_current_span(
        "deliver room message",
        context=_delivery_parents.get(message_id),
        attributes={"plop.room.id": room_id, "plop.message.id": message_id},
    ) as span:
        yield span
