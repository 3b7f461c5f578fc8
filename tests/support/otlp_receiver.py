"""A small OTLP/HTTP trace receiver for tests: what a collector (Jaeger, Tempo, the
otel-collector) would be given, decoded with the protocol's own generated classes.

It serves ``POST /v1/traces`` on a loopback port from a thread, keeps every span of
every ``ExportTraceServiceRequest`` it is sent with the resource it came from, and
wakes the test's event loop on each export, so that a test waits for the spans it
expects rather than for a time.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACES_PATH = "/v1/traces"


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def _attributes(pairs: Iterator[KeyValue] | list[KeyValue]) -> dict[str, object]:
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, with what its resource says of the process that made it."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    kind: int
    attributes: dict[str, object]
    service: dict[str, object]

    @classmethod
    def of(cls, span: Span, service: dict[str, object]) -> ReceivedSpan:
        return cls(
            span.name,
            span.trace_id.hex(),
            span.span_id.hex(),
            span.parent_span_id.hex(),
            span.kind,
            _attributes(list(span.attributes)),
            service,
        )

    @property
    def instance(self) -> object:
        return self.service.get("service.instance.id")


class OtlpReceiver:
    """The spans exported to it so far; ``url`` is the endpoint to give Plop."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def record(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = [
            ReceivedSpan.of(span, _attributes(list(resource_spans.resource.attributes)))
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.spans.extend(received)
            self.requests += 1
        self._loop.call_soon_threadsafe(self._changed.set)

    async def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], within: float = 30.0
    ) -> list[ReceivedSpan]:
        """Every span received, once ``found`` holds of them (waits for exports)."""
        async with asyncio.timeout(within):
            while True:
                self._changed.clear()
                with self._lock:
                    spans = list(self.spans)
                if found(spans):
                    return spans
                await self._changed.wait()


@contextmanager
def otlp_receiver(port: int) -> Iterator[OtlpReceiver]:
    """Serves an ``OtlpReceiver`` on the loopback port inside the block (call it from
    the event loop the test waits in)."""
    receiver = OtlpReceiver(port)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != TRACES_PATH:
                self.send_response(404)
                self.end_headers()
                return
            receiver.record(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return None  # the test's output is not the place for access lines

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
