"""Query cost: a bound on the work a document may ask for, checked before it runs.

Depth, alias and token limits bound the size of a document, not its work: 30 aliases
of ``rooms(first: 100) { edges { node { members { presence { status } } } } }`` fit
in 2 KB and ask for 300,000 presence lookups. The cost counts the objects a result
can hold. Every object counts 1 (scalars are free: they come with their object), and
a list multiplies what it holds by the number of items it may have:

- its own ``first``/``last`` (``members(first: 5)``), or that argument's default;
- below a paged connection (``rooms(first: 20)``), the connection's page size for
  its ``edges``;
- a list sized by an argument of a field above it (``ARGUMENT_SIZED_LISTS``: sync's
  ``rooms`` and ``messagesPerRoom``), that argument;
- a list the server itself bounds (``BOUNDED_LISTS``: a message's reaction groups,
  mentions and attachments), that bound;
- otherwise ``DEFAULT_LIST_SIZE``, a full page.

Arguments given as variables are read from the request's variables, so the cost
depends on them: it is checked once per operation, after validation (a cached
validation rule would see only the document).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    value_from_ast_untyped,
)
from graphql.pyutils import Undefined

from services.mentions import MAX_MENTIONS
from services.uploads import MAX_ATTACHMENTS_PER_MESSAGE
from settings import MAX_REACTION_GROUPS

# The items a list may hold when the query does not say: a full page (the most a
# page of rooms or history may hold).
DEFAULT_LIST_SIZE = 100
# The largest GraphQL Int: a bigger value is refused when variables are coerced, with
# its own message, so here it weighs like any value that is not a number.
MAX_INT = 2**31 - 1
PAGE_ARGUMENTS = ("first", "last")
# Lists with no paging argument whose length the server bounds, by (type, field).
BOUNDED_LISTS: dict[tuple[str, str], int] = {
    ("Message", "reactions"): MAX_REACTION_GROUPS,
    ("Message", "mentions"): MAX_MENTIONS,
    ("Message", "attachments"): MAX_ATTACHMENTS_PER_MESSAGE,
}

# Lists whose length an argument of a field above them bounds: the field, and which
# of its arguments sizes which list below it, by (type, field).
ARGUMENT_SIZED_LISTS: dict[tuple[str, str], dict[tuple[str, str], str]] = {
    ("Query", "sync"): {
        ("SyncResult", "rooms"): "rooms",
        ("RoomSync", "messages"): "messagesPerRoom",
    },
}


class _CostWalk:
    """Walks one operation, with its fragments and variables."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self._variables = variables
        # The lists below the field being walked that its arguments size.
        self._sized: dict[tuple[str, str], int] = {}
        # Whether a size came from the request's variables: if none did, the cost is
        # the document's own, the same for every request of it.
        self.read_variables = False

    def selections(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        page: int | None,
        spread: frozenset[str] = frozenset(),
    ) -> int:
        """The cost of a selection set on the parent type (page: the connection's)."""
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                on = self._schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, on, page, spread)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self._fragments.get(name)
                if fragment is None or name in spread:  # unknown or a cycle: validation's
                    continue
                on = self._schema.get_type(fragment.type_condition.name.value)
                total += self.selections(fragment.selection_set, on, page, spread | {name})
        return total

    def _field(self, node: FieldNode, parent: GraphQLNamedType | None, page: int | None) -> int:
        if node.selection_set is None or node.name.value.startswith("__"):
            return 0  # a scalar, or introspection (bounded by the schema itself)
        field = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            field = parent.fields.get(node.name.value)
        if field is None:
            return 1
        own_page = self._page_size(node, field)
        items, below = 1, own_page
        key = (parent.name, node.name.value) if parent else ("", "")
        if isinstance(get_nullable_type(field.type), GraphQLList):
            bound = self._sized.get(key, BOUNDED_LISTS.get(key))
            items = next(
                size for size in (own_page, bound, page, DEFAULT_LIST_SIZE) if size is not None
            )
            below = None
        inner = get_named_type(field.type)
        outer = self._sized
        self._sized = dict(outer)
        for sized, argument in ARGUMENT_SIZED_LISTS.get(key, {}).items():
            size = self._argument_size(node, field, argument)
            self._sized[sized] = DEFAULT_LIST_SIZE if size is None else size
        try:
            return items * (1 + self.selections(node.selection_set, inner, below))
        finally:
            self._sized = outer

    def _page_size(self, node: FieldNode, field: GraphQLField) -> int | None:
        """The page size the field's first/last ask for; None if it has no such argument."""
        if not any(name in field.args for name in PAGE_ARGUMENTS):
            return None
        sizes = [
            size
            for name in PAGE_ARGUMENTS
            if name in field.args and (size := self._argument_size(node, field, name)) is not None
        ]
        return max(sizes) if sizes else DEFAULT_LIST_SIZE

    def _argument_size(self, node: FieldNode, field: GraphQLField, name: str) -> int | None:
        """The number the field's argument asks for (its default if not given); None if
        neither gives one."""
        given = {argument.name.value: argument.value for argument in node.arguments or ()}
        value: Any = None
        if (value_node := given.get(name)) is not None:
            if isinstance(value_node, VariableNode):
                self.read_variables = True
                value = self._variables.get(value_node.name.value)
            else:
                value = value_from_ast_untyped(value_node)
        if value is None and name in field.args:  # not given, or null: the default applies
            value = field.args[name].default_value
        if isinstance(value, int) and not isinstance(value, bool) and value <= MAX_INT:
            return max(value, 0)
        if value is not None and value is not Undefined:
            return DEFAULT_LIST_SIZE  # not a number: refused later, weighed fully
        return None


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((op for op in operations if op.name and op.name.value == name), None)


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The cost of the document's operation (0 if it names none that exists)."""
    return costed(schema, document, operation_name, variables)[0]


def costed(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> tuple[int, bool]:
    """``query_cost``, and whether any of the variables sized a list: if not, every
    request of this document and operation costs the same."""
    operation = _operation(document, operation_name)
    if operation is None:
        return 0, False
    values: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        if definition.default_value is not None:
            values[definition.variable.name.value] = value_from_ast_untyped(
                definition.default_value
            )
    values.update(variables or {})
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = schema.get_root_type(operation.operation)
    walk = _CostWalk(schema, fragments, values)
    return walk.selections(operation.selection_set, root, None), walk.read_variables


def cost_refusal(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, Any] | None,
    max_cost: int,
) -> GraphQLError | None:
    """The error that refuses, before execution, an operation costing more than
    ``max_cost``; None if it costs no more. Only a valid document is costed."""
    return refusal_for_cost(query_cost(schema, document, operation_name, variables), max_cost)


def refusal_for_cost(cost: int, max_cost: int) -> GraphQLError | None:
    """The refusal of an operation that costs ``cost``; None if that is within the limit."""
    if cost <= max_cost:
        return None
    return GraphQLError(
        f"the query costs {cost}, more than the limit of {max_cost}: "
        "ask for smaller pages (first/last) or fewer nested lists",
        extensions={"code": "BAD_USER_INPUT", "cost": cost, "maxCost": max_cost},
    )
