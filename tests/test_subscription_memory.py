"""A subscription's memory does not grow with the events it delivers."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from graphql import parse
from graphql.execution import Executor

from schema.execution import PlopExecutionContext


@strawberry.type
class Item:
    id: int
    name: str


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def items(self) -> AsyncGenerator[Item, None]:
        yield Item(id=0, name="never used")


SCHEMA = strawberry.Schema(query=Query, subscription=Subscription)
DOCUMENT = parse("subscription { items { id name } }")


def _memo_after_events(executor_class: type[Executor[Any]], events: int) -> int:
    executor = executor_class.build(SCHEMA._schema, DOCUMENT)
    assert isinstance(executor, Executor)
    for number in range(events):
        # Strawberry resolves a subscription field of an event to the event itself.
        per_event = executor.build_per_event_executor(Item(id=number, name="x"))
        result = per_event.execute_operation()
        assert result.errors is None  # type: ignore[union-attr]
    return len(executor._relevant_sub_fields)


def test_per_event_executors_leave_the_subscription_memo_alone() -> None:
    assert _memo_after_events(PlopExecutionContext, 200) == 0


def test_the_unpatched_executor_grows_per_event() -> None:
    # Shows what the fix is for: if graphql-core stops leaking, this fails, and the
    # patch in schema/execution.py can go.
    assert _memo_after_events(Executor, 200) >= 200
