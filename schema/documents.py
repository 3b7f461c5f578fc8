"""A document's checks in one extension: parsed and validated once per distinct text.

Every operation's document is parsed with a token limit, validated with strawberry's
rules plus Plop's (depth, aliases, no introspection unless enabled), and costed. The
parse and the validation are kept in strawberry's shared LRU caches, so a document
an app sends again is neither parsed nor validated again; the cost depends on the
variables and is computed for each operation (it is a short walk).

One extension does it all because strawberry wraps each hook of each extension in a
context manager of its own, for every operation: five extensions for these checks
cost more per sendMessage than the checks themselves, once the caches hit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from graphql import ASTValidationRule, DocumentNode
from strawberry.extensions import SchemaExtension
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from schema.cost import costed, refusal_for_cost


class DocumentRules:
    """What every document is checked against, and the caches, made once per schema."""

    def __init__(
        self,
        cache_size: int,
        max_tokens: int,
        max_cost: int,
        validation_rules: Sequence[type[ASTValidationRule]],
    ) -> None:
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        # The limiters' rule classes, made once: the validation cache is keyed by the
        # rules as well as the document, so rules made per operation would always miss.
        self.validation_rules = tuple(validation_rules)
        # strawberry's module-level LRU caches, shared by every schema of this size.
        self.parse: Any = _get_parse_cache(cache_size)
        self.validate: Any = _get_validate_cache(cache_size)
        self._cache_size = cache_size
        # The cost of each (text, operation name) whose cost no variable sizes.
        self._costs: OrderedDict[tuple[str, str | None], int] = OrderedDict()

    def cost(
        self,
        schema: Any,
        text: str,
        document: DocumentNode,
        operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> int:
        """The operation's cost, from the kept costs when no variable sizes it."""
        key = (text, operation_name)
        if (known := self._costs.get(key)) is not None:
            self._costs.move_to_end(key)
            return known
        cost, read_variables = costed(schema, document, operation_name, variables)
        if not read_variables:
            self._costs[key] = cost
            if len(self._costs) > self._cache_size:
                self._costs.popitem(last=False)
        return cost

    def extension(self) -> Callable[[], SchemaExtension]:
        """The factory strawberry calls for each operation."""
        return lambda: DocumentChecks(self)


class DocumentChecks(SchemaExtension):
    """Parses (token limit), validates (Plop's rules too) and costs one operation."""

    def __init__(self, rules: DocumentRules) -> None:
        self._rules = rules

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self._rules.max_tokens
        context.graphql_document = self._rules.parse(context.query, **context.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        context.validation_rules = context.validation_rules + self._rules.validation_rules
        errors = self._rules.validate(context.schema._schema, document, context.validation_rules)
        if not errors and document is not None:
            cost = self._rules.cost(
                context.schema._schema,
                context.query or "",
                document,
                context.operation_name,
                context.variables,
            )
            if (refusal := refusal_for_cost(cost, self._rules.max_cost)) is not None:
                errors = [refusal]
        context.pre_execution_errors = errors
        yield
