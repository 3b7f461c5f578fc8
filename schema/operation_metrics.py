"""Counting GraphQL operations and their backend round trips by root field: the one
part of the metrics that reads documents. Labels come from the schema, so a client
cannot add series."""

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
    OperationDefinitionNode,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from observability.backend_commands import counting_under
from observability.metrics import OPERATION_SECONDS, OPERATIONS

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
        with counting_under(_root_field(operation)):
            yield
