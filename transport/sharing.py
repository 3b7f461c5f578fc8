"""When subscriptions may share one execution per event, and that execution.

graphql-core runs a subscription's selection once per subscriber per event. Two
subscriptions render an event to the same payload when they send the same document
and operation with the same values for every variable the selection reads below its
root field, and no field below the root reads the viewer. Such subscriptions share
one rendering per event (``live.room_feeds``); the rendering is the very execution
graphql-core would run per event, with the event as the root value.

The socket handlers (``transport.handlers``) run each WebSocket operation with a
``SocketOperation`` as its root value: the operation as its client sent it and the
way to its socket. The messageAdded and roomActivity resolvers hand their room to
it (``schema.live.LiveOperation``), and the handler follows the room's feed once
strawberry's execution has ended. This module and ``transport.handlers`` are the
only ones that reach into strawberry's and graphql-core's internals (named where used).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import lru_cache
from inspect import isawaitable
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    TypeNameMetaFieldDef,
    VariableNode,
    Visitor,
    execute_subscription_event,
    parse,
    visit,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from live.account_feed import TOKEN_PLACEHOLDER, AccountRenderings, follow_account
from live.account_stream import AccountItem, AccountStream, Given
from live.room_feeds import PayloadSink, RoomFeeds
from schema.account_event_types import AccountEvent, AccountEventPayload
from schema.context import Context
from schema.errors import with_code
from schema.execution import PlopExecutionContext
from schema.types import Message, activity_of

DOCUMENT_ANALYSES = 1_024
# strawberry's back-reference from a graphql-core field to its StrawberryField.
DEFINITION = GraphQLCoreConverter.DEFINITION_BACKREF


@dataclass(slots=True)
class SocketOperation:
    """A WebSocket operation as its client sent it, and the way to its socket.

    The root value of the operation (``schema.live.LiveOperation``). ``follow`` is
    set once a subscription is handed to the socket: what the socket then serves
    until the subscription ends, instead of completing the operation.
    """

    query: str
    operation_name: str | None
    variables: dict[str, Any] | None
    sink: PayloadSink
    schema: GraphQLSchema
    context: Context
    feeds: RoomFeeds
    account_renderings: AccountRenderings[Callable[[Any], Awaitable[str]]]
    follow: Callable[[], Awaitable[None]] | None = None

    def follow_room(self, room_id: str, viewer_id: str, after_seq: int | None) -> None:
        """The socket is to stream the room's messages through a shared feed."""
        shared = self._shared(Message.from_data)
        feeds, sink = self.feeds, self.sink
        self.follow = lambda: feeds.follow(
            room_id, viewer_id, after_seq, shared.key, shared.make_render, sink
        )

    def follow_activity(self, room_id: str, viewer_id: str) -> None:
        """The socket is to stream the room's activity through a shared feed."""
        shared = self._shared(activity_of)
        feeds, sink = self.feeds, self.sink
        self.follow = lambda: feeds.follow_activity(
            room_id, viewer_id, shared.key, shared.make_render, sink
        )

    def follow_account(
        self,
        stream: AccountStream,
        payload_of: Callable[[AccountItem], Awaitable[AccountEventPayload | None]],
        token_of: Callable[[Given], Awaitable[str]],
    ) -> None:
        """The socket is to stream the account, each event rendered once for every
        account stream here that renders alike (``live.account_feed``)."""
        shared = self._shared(lambda root: root)
        renderings = self.account_renderings
        render = renderings.renderer(shared.key, shared.make_render)

        async def rendered(given: Given) -> str | None:
            async def once() -> str | None:
                payload = await payload_of(given.item)
                if payload is None:
                    return None
                return await render(AccountEvent(token=TOKEN_PLACEHOLDER, payload=payload))

            return await renderings.rendered(shared.key, given.item, once)

        sink = self.sink
        self.follow = lambda: follow_account(stream, rendered, token_of, sink)

    def _shared(self, to_root: Callable[[Any], Any]) -> SharedSelection:
        shared = shared_selection(self.schema, self, self.context, to_root)
        if shared is None:
            # Strawberry runs a subscription's resolver only for a valid document
            # with one subscription operation chosen: every such selection shares.
            raise RuntimeError("a validated subscription could not share its rendering")
        return shared


@dataclass(frozen=True, slots=True)
class _Analysis:
    document: DocumentNode
    # Variables the selection reads below its root field (in fragments included).
    rendered_variables: frozenset[str]
    # Whether a field below the root runs a resolver of its own, which may read the
    # viewer (``User.presence`` does): then only one viewer's subscriptions share.
    viewer_scoped: bool


class _SelectionReader(Visitor):
    """Collects what a rendering depends on; the root field's arguments choose the
    stream (which room, from where), never how an event renders."""

    def __init__(self, type_info: TypeInfo, field_depth: int) -> None:
        super().__init__()
        self._type_info = type_info
        self._field_depth = field_depth  # 1 inside the root field
        self._directive_depth = 0
        self.variables: set[str] = set()
        self.resolvers = False

    def enter_variable_definition(self, *_: Any) -> Any:
        return Visitor.SKIP  # a definition, not a usage

    def enter_field(self, *_: Any) -> None:
        self._field_depth += 1
        if self._field_depth == 1:
            return  # the root field: its resolver is the stream, not the rendering
        definition = self._type_info.get_field_def()
        if definition is TypeNameMetaFieldDef:
            return  # the type's name reads nothing (a union's member, say)
        field = definition.extensions.get(DEFINITION) if definition is not None else None
        if not isinstance(field, StrawberryField) or field.base_resolver is not None:
            self.resolvers = True

    def leave_field(self, *_: Any) -> None:
        self._field_depth -= 1

    def enter_directive(self, *_: Any) -> None:
        self._directive_depth += 1

    def leave_directive(self, *_: Any) -> None:
        self._directive_depth -= 1

    def enter_argument(self, *_: Any) -> Any:
        if self._field_depth == 1 and not self._directive_depth:
            return Visitor.SKIP
        return None

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.variables.add(node.name.value)


def _name(operation: OperationDefinitionNode) -> str | None:
    return operation.name.value if operation.name else None


@lru_cache(maxsize=DOCUMENT_ANALYSES)
def _analyse(schema: GraphQLSchema, query: str, operation_name: str | None) -> _Analysis | None:
    document = parse(query)
    operations = [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        and (operation_name is None or _name(definition) == operation_name)
    ]
    subscription_type = schema.subscription_type
    if (
        len(operations) != 1
        or operations[0].operation is not OperationType.SUBSCRIPTION
        or subscription_type is None
    ):
        return None
    variables: set[str] = set()
    resolvers = False
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and definition is not operations[0]:
            continue
        # A fragment on the subscription type holds root fields itself.
        on_root = isinstance(definition, OperationDefinitionNode) or (
            isinstance(definition, FragmentDefinitionNode)
            and definition.type_condition.name.value == subscription_type.name
        )
        type_info = TypeInfo(schema)
        reader = _SelectionReader(type_info, field_depth=0 if on_root else 1)
        visit(definition, TypeInfoVisitor(type_info, reader))
        variables |= reader.variables
        resolvers = resolvers or reader.resolvers
    return _Analysis(document, frozenset(variables), resolvers)


@dataclass(frozen=True, slots=True)
class SharedSelection:
    """How a subscription's events render, and with whom the rendering is shared."""

    key: Hashable
    # Builds the rendering when a feed starts (its subscribers share that one).
    make_render: Callable[[], Callable[[Any], Awaitable[str]]]


def shared_selection(
    schema: GraphQLSchema, live: SocketOperation, context: Context, to_root: Callable[[Any], Any]
) -> SharedSelection | None:
    """The sharing of a validated subscription, or None if it cannot share.

    ``to_root`` turns a stream's event into the root value the selection runs on.
    """
    analysis = _analyse(schema, live.query, live.operation_name)
    if analysis is None:
        return None
    variables = live.variables or {}
    rendered = {name: variables.get(name) for name in sorted(analysis.rendered_variables)}
    viewer = context.viewer if analysis.viewer_scoped else None
    key = (
        live.query,
        live.operation_name,
        json.dumps(rendered, sort_keys=True, default=str),
        str(viewer.id) if viewer is not None else None,
    )

    def make_render() -> Callable[[Any], Awaitable[str]]:
        """Called once per feed: the subscribers that join it later share this one."""
        # The feed's own context: sockets come and go, the rendering outlives any one.
        render_context = Context(context.services, token=None, over_websocket=True)
        render_context.viewer = viewer
        executor = PlopExecutionContext.build(
            schema,
            analysis.document,
            context_value=render_context,
            raw_variable_values=variables,
            operation_name=live.operation_name,
        )
        if isinstance(executor, list):
            # The same variables coerced a moment ago, when the subscription started.
            raise RuntimeError(f"variables did not coerce: {executor}")

        async def render(event: Any) -> str:
            # Exactly graphql-core's per-event step of a subscription, with the event as root.
            per_event = executor.build_per_event_executor(to_root(event))
            result = execute_subscription_event(per_event)
            if isawaitable(result):
                result = await result
            assert isinstance(result, ExecutionResult)
            return encode_payload(result)

        return render

    return SharedSelection(key, make_render)


def error_payload(error: Exception) -> dict[str, Any]:
    """The payload of the frame that ends a followed subscription with an error, as
    strawberry sends an exception raised by a subscription's stream."""
    located = (
        error if isinstance(error, GraphQLError) else GraphQLError(str(error), original_error=error)
    )
    return {"data": None, "errors": [with_code(located).formatted]}


def encode_payload(result: ExecutionResult) -> str:
    """A result as the payload of a ``next`` (or legacy ``data``) frame."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [with_code(error).formatted for error in result.errors]
    return json.dumps(payload)
