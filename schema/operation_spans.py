"""A span for each GraphQL operation, the root of a request's trace
(``observability.tracing``).

Named ``graphql.<operation type> <root field>`` once the document is parsed, with
the same bounded root field as the metrics (``schema.operation_metrics``): what a
client wrote never becomes a span name. The span is current while the operation
runs, so its store commands and publishes are its children.
"""

from __future__ import annotations

from collections.abc import Iterator

from opentelemetry.trace import SpanKind, StatusCode
from strawberry.extensions import SchemaExtension

from observability import tracing
from schema.operation_metrics import UNKNOWN_FIELD, root_field_label

# The span's name until the document is known (one that never parses keeps it).
UNPARSED = "graphql.invalid"


class OperationSpans(SchemaExtension):
    """Records each operation in a span while tracing is on; nothing otherwise."""

    def on_operation(self) -> Iterator[None]:
        if not tracing.active:
            yield
            return
        with tracing.tracer().start_as_current_span(UNPARSED, kind=SpanKind.SERVER) as span:
            yield
            context = self.execution_context
            try:
                kind = context.operation_type
            except RuntimeError:  # the document did not parse
                kind = None
            if kind is not None:
                field = UNKNOWN_FIELD
                if context.graphql_document is not None:
                    field = root_field_label(
                        context.schema._schema, context.graphql_document, context.operation_name
                    )
                span.update_name(f"graphql.{kind.value} {field}")
                span.set_attribute("graphql.operation.type", kind.value)
            result = context.result
            errors = context.pre_execution_errors or getattr(result, "errors", None)
            if result is None or errors:
                span.set_status(StatusCode.ERROR)
