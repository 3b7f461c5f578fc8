"""The execution context class, with graphql-core's per-event memo leak fixed.

graphql-core 3.3 builds each subscription event's executor as a shallow copy of the
subscription's executor, so every event writes its collected sub-fields into the
one ``_relevant_sub_fields`` memo the whole subscription shares (keyed by the
identity of a list made anew for each event): about 2.8 KB per event per
subscription, freed only when the subscription ends. A fresh memo per event keeps
the memo's purpose (sharing within one execution) and ends the growth.
"""

from __future__ import annotations

from typing import Any

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class PlopExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context; each subscription event gets its own memo."""

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor
