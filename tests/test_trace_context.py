"""The trace context's way through the brokers, in one process (observability.tracing):
off without an endpoint (no exporter, no headers, no store listener), and with
tracing on, the publish's context in the Kafka record's headers or beside the
embedded broker's event, and the consume span its child."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from observability import tracing
from observability.store_spans import store_listeners
from pubsub.events import TypingChanged
from pubsub.kafka import KafkaBroker
from pubsub.memory import MemoryBroker
from schema.operation_spans import OperationSpans
from schema.root import build_schema
from settings import Settings

TOPIC = "plop-room-events"


class RecordingProducer:
    """Stands in for aiokafka's producer: keeps what each send was given."""

    def __init__(self) -> None:
        self.sends: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, **options: Any) -> None:
        self.sends.append({"topic": topic, "value": value, **options})


def kafka_broker(producer: RecordingProducer) -> KafkaBroker:
    broker = KafkaBroker("kafka://127.0.0.1:1", "test")
    broker._producer = producer  # started, as far as publish can tell
    return broker


def typing_event() -> TypingChanged:
    return TypingChanged(
        room_id="r1", user_id="u1", username="ann", display_name="Ann", typing=True
    )


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, spans kept in memory as they end."""
    exporter = InMemorySpanExporter()
    tracing.install(SimpleSpanProcessor(exporter), "plop-test", "unit")
    try:
        yield exporter
    finally:
        tracing.uninstall()


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [span for span in exporter.get_finished_spans() if span.name == name]
    return span


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def tracing_on() -> bool:
    """The flag as it stands now (a function, so the checker does not narrow it)."""
    return tracing.active


async def test_without_an_endpoint_nothing_is_set_up_and_no_header_is_added() -> None:
    producer = RecordingProducer()
    async with tracing.exporting(None, "plop", "off"):
        assert not tracing_on()
        assert store_listeners() == []
        await kafka_broker(producer).publish(TOPIC, "r1", typing_event())
    (sent,) = producer.sends
    assert sent.get("headers") is None
    assert sent["key"] == b"r1"


async def test_an_endpoint_sets_up_the_export_for_the_block_only() -> None:
    async with tracing.exporting("http://127.0.0.1:1", "plop", "on"):
        assert tracing_on()
        assert len(store_listeners()) == 1
    assert not tracing_on()
    assert store_listeners() == []


def test_the_traces_path_is_added_to_a_collector_base_url_once() -> None:
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


async def test_the_publish_carries_its_span_context_in_the_record_headers(
    recorded: InMemorySpanExporter,
) -> None:
    producer = RecordingProducer()
    with tracing.tracer().start_as_current_span("request"):
        await kafka_broker(producer).publish(TOPIC, "r1", typing_event())
    request, publish = named(recorded, "request"), named(recorded, f"publish {TOPIC}")
    assert publish.kind is SpanKind.PRODUCER
    assert parent_id(publish) == request.context.span_id
    headers = dict(producer.sends[0]["headers"])
    version, trace_id, span_id, _flags = headers["traceparent"].decode().split("-")
    assert version == "00"
    assert int(trace_id, 16) == publish.context.trace_id
    assert int(span_id, 16) == publish.context.span_id


async def test_a_consume_span_is_a_child_of_the_publish_its_headers_name(
    recorded: InMemorySpanExporter,
) -> None:
    producer = RecordingProducer()
    await kafka_broker(producer).publish(TOPIC, "r1", typing_event())
    tracing.received_headers(producer.sends[0]["headers"])
    with tracing.consuming(TOPIC, "typing.changed", None):
        pass
    publish, consume = named(recorded, f"publish {TOPIC}"), named(recorded, f"consume {TOPIC}")
    assert consume.kind is SpanKind.CONSUMER
    assert consume.context.trace_id == publish.context.trace_id
    assert parent_id(consume) == publish.context.span_id


async def test_headers_that_carry_no_valid_context_start_a_trace_of_their_own(
    recorded: InMemorySpanExporter,
) -> None:
    tracing.received_headers([("traceparent", b"\xff not a context"), ("other", b"x")])
    with tracing.consuming(TOPIC, "typing.changed", None):
        pass
    assert named(recorded, f"consume {TOPIC}").parent is None


async def test_a_delivery_is_a_child_of_its_message_s_consume_and_a_refill_is_a_root(
    recorded: InMemorySpanExporter,
) -> None:
    tracing.received_context(None)
    with tracing.consuming(TOPIC, "message.added", "m1"):
        pass
    with tracing.delivering("m1", "r1"):
        pass
    with tracing.delivering("m2", "r1"):  # never consumed here: read from the store
        pass
    consume = named(recorded, f"consume {TOPIC}")
    first, refill = [s for s in recorded.get_finished_spans() if s.name == "deliver room message"]
    assert parent_id(first) == consume.context.span_id
    assert refill.parent is None


async def test_the_embedded_broker_keeps_the_context_in_the_process(
    recorded: InMemorySpanExporter,
) -> None:
    broker = MemoryBroker()
    async with broker.subscribe(TOPIC) as events:
        with tracing.tracer().start_as_current_span("request"):
            await broker.publish(TOPIC, "r1", typing_event())

        # A task of its own, as the hub's consumer is: nothing current is inherited.
        async def consume_one() -> None:
            event = await anext(events)
            with tracing.consuming(TOPIC, event.type, None):
                pass

        await asyncio.create_task(consume_one())
    publish, consume = named(recorded, f"publish {TOPIC}"), named(recorded, f"consume {TOPIC}")
    assert parent_id(publish) == named(recorded, "request").context.span_id
    assert parent_id(consume) == publish.context.span_id


def test_operations_pay_for_no_span_extension_without_an_endpoint() -> None:
    off = build_schema(Settings(otlp_endpoint=None))
    on = build_schema(Settings(otlp_endpoint="http://127.0.0.1:4318"))
    assert OperationSpans not in off.extensions
    assert on.extensions[0] is OperationSpans


async def test_a_silent_collector_holds_the_stop_no_longer_than_the_flush_allows() -> None:
    """A collector that takes the connection and never answers: the stop gives the
    last spans up (after ``FLUSH_SECONDS``) while their export still waits."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepted by the kernel, never read
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with asyncio.timeout(tracing.EXPORT_TIMEOUT_SECONDS):
            async with tracing.exporting(endpoint, "plop", "silent"):
                with tracing.tracer().start_as_current_span("left to flush"):
                    pass
        assert not tracing_on()
        flushing = [t for t in threading.enumerate() if t.name == tracing.FLUSH_THREAD]
        assert any(thread.is_alive() for thread in flushing)
