"""The execution context class: the request's last checks, and a memo leak fixed.

Every operation, over HTTP or either WebSocket protocol, is built here, so two
checks that no validation rule can make (it sees neither the variables nor the
transport) sit at this one boundary:

- a variable's string with a lone surrogate (JSON ``"\\ud800"``) or a NUL character
  is refused: neither is text, and each would fail later wherever it is encoded
  (BSON, PostgreSQL under FerretDB, Redis, a push). Literals with a lone surrogate
  are refused by graphql-core's lexer already.
- a subscription over HTTP is refused: subscriptions stream over WebSocket only.

graphql-core 3.3 builds each subscription event's executor as a shallow copy of the
subscription's executor, so every event writes its collected sub-fields into the
one ``_relevant_sub_fields`` memo the whole subscription shares (keyed by the
identity of a list made anew for each event): about 2.8 KB per event per
subscription, freed only when the subscription ends. A fresh memo per event keeps
the memo's purpose (sharing within one execution) and ends the growth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import GraphQLError, OperationType
from graphql.execution.executor import Executor
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from errors import BadUserInput
from schema.context import Context

SUBSCRIPTION_OVER_HTTP = (
    "subscriptions are served over WebSocket only (graphql-transport-ws or graphql-ws)"
)


def has_lone_surrogate(text: str) -> bool:
    """Whether the string holds a surrogate code point, which no UTF-8 text can."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def variable_that_is_not_text(variables: Mapping[str, Any] | None) -> str | None:
    """The name of the first variable with a NUL or a lone surrogate anywhere in its value.

    Walks without recursion: a client chooses how deeply its JSON nests.
    """
    for name, value in (variables or {}).items():
        pending = [name, value]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                if "\x00" in item or has_lone_surrogate(item):
                    return name
            elif isinstance(item, Mapping):
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list | tuple):
                pending.extend(item)
    return None


def _refusal(message: str) -> GraphQLError:
    return GraphQLError(message, original_error=BadUserInput(message))


class PlopExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context with Plop's request checks (see the module)."""

    @classmethod
    def build(
        cls,
        schema: Any,
        document: Any,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[GraphQLError] | Executor[Any]:
        """The executor, or the errors that refuse the request before it runs."""
        if isinstance(raw_variable_values, Mapping):
            name = variable_that_is_not_text(raw_variable_values)
            if name is not None:
                shown = f"${name} " if not ("\x00" in name or has_lone_surrogate(name)) else ""
                return [
                    _refusal(
                        f"variable {shown}holds a NUL character or a lone surrogate, "
                        "which is not text"
                    )
                ]
        built = super().build(
            schema, document, root_value, context_value, raw_variable_values, *args, **kwargs
        )
        if (
            not isinstance(built, list)
            and built.operation.operation is OperationType.SUBSCRIPTION
            and isinstance(context_value, Context)
            and not context_value.over_websocket
        ):
            return [_refusal(SUBSCRIPTION_OVER_HTTP)]
        return built

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor
