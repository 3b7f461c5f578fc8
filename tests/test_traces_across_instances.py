"""Traces across instances: real ``plop serve`` processes export their spans over
OTLP/HTTP to a receiver this file runs (tests/support/otlp_receiver.py).

A message sent through instance A to a subscriber on instance B is one trace: A's
operation, store and publish spans, and B's consume and delivery spans, each a child
of the one before it across the Kafka record's headers. The embedded default makes
the same trace in its one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import pytest_asyncio

from devtools.processes import LOAD_TEST_LIMITS
from tests.support.chat import HISTORY, MESSAGE_ADDED, SEND, as_user, direct_room, send
from tests.support.clients import SUBPROTOCOLS, sign_up, subscribed, ws_session
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.support.server import ServerProcess, free_port

SERVICE_NAME = "plop-traced"
# The SDK's batch export waits this long (ms) between exports: short, so that the
# tests wait for spans a moment, not the default five seconds.
EXPORT_DELAY = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
DELIVERY = "deliver room message"
SEND_OPERATION = "graphql.mutation sendMessage"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def receiver() -> AsyncIterator[OtlpReceiver]:
    with otlp_receiver(free_port()) as running:
        yield running


def traced(receiver: OtlpReceiver, instance: str) -> dict[str, str]:
    return {
        "PLOP_OTLP_ENDPOINT": receiver.url,
        "PLOP_OTLP_SERVICE_NAME": SERVICE_NAME,
        "PLOP_INSTANCE_ID": instance,
        **EXPORT_DELAY,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced_pair(
    real_env: dict[str, str], receiver: OtlpReceiver
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    """Instances A and B on the real services, both exporting to the receiver."""
    a = ServerProcess("traced-a", {**real_env, **traced(receiver, "traced-a")})
    b = ServerProcess("traced-b", {**real_env, **traced(receiver, "traced-b")})
    await a.start()
    try:
        await b.start()
        try:
            yield a, b
        finally:
            await b.stop()
    finally:
        await a.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traced_embedded(receiver: OtlpReceiver) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(
        "traced-embedded", {**LOAD_TEST_LIMITS, **traced(receiver, "traced-embedded")}
    )
    await server.start()
    yield server
    await server.stop()


def message_trace(spans: list[ReceivedSpan], message_id: str) -> list[ReceivedSpan]:
    """The spans of the trace whose delivery handed out this message."""
    trace_ids = {
        span.trace_id
        for span in spans
        if span.name == DELIVERY and span.attributes.get("plop.message.id") == message_id
    }
    return [span for span in spans if span.trace_id in trace_ids]


def holds(message_id: str, *names: Callable[[str], bool]) -> Callable[[list[ReceivedSpan]], bool]:
    """Whether the message's trace has a span matching each of ``names``."""

    def found(spans: list[ReceivedSpan]) -> bool:
        trace = message_trace(spans, message_id)
        return all(any(name(span.name) for span in trace) for name in names)

    return found


def is_(expected: str) -> Callable[[str], bool]:
    return lambda name: name == expected


def publish_of_room_events(name: str) -> bool:
    return name.startswith("publish ") and name.endswith("room-events")


def consume_of_room_events(name: str) -> bool:
    return name.startswith("consume ") and name.endswith("room-events")


def only(
    trace: list[ReceivedSpan], matches: Callable[[str], bool], instance: str | None = None
) -> ReceivedSpan:
    """The one span of the trace with a matching name (made by ``instance``, if named)."""
    found = [
        span
        for span in trace
        if matches(span.name) and (instance is None or span.instance == instance)
    ]
    assert len(found) == 1, [(span.name, span.instance) for span in trace]
    return found[0]


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_message_sent_through_a_and_delivered_by_b_is_one_trace(
    traced_pair: tuple[ServerProcess, ServerProcess], receiver: OtlpReceiver, subprotocol: str
) -> None:
    a, b = traced_pair
    alice, bob = await sign_up(a), await sign_up(b)
    room_id = await direct_room(a, alice, bob)
    async with (
        ws_session(b, subprotocol, bob.token) as session,
        subscribed(b, session, MESSAGE_ADDED, r=room_id) as live,
    ):
        sent = await send(a, alice, room_id, "followed across instances")
        received = await live.next()
    assert received["messageAdded"]["id"] == sent["id"]

    spans = await receiver.wait_for(
        holds(
            sent["id"],
            is_(SEND_OPERATION),
            is_("insert messages"),
            publish_of_room_events,
            consume_of_room_events,
            is_(DELIVERY),
        )
    )
    trace = message_trace(spans, sent["id"])
    operation = only(trace, is_(SEND_OPERATION))
    insert = only(trace, is_("insert messages"))
    publish = only(trace, publish_of_room_events)
    # B consumes it for its subscriber; A may consume it too (the send path keeps
    # what it knows of the room fresh from the room's events), in the same trace.
    consume = only(trace, consume_of_room_events, "traced-b")
    delivery = only(trace, is_(DELIVERY))

    # One trace: A's request, its store and its publish; B's consume and delivery.
    assert {span.trace_id for span in trace} == {operation.trace_id}
    assert operation.parent_id == ""
    assert insert.parent_id == operation.span_id
    assert publish.parent_id == operation.span_id
    assert consume.parent_id == publish.span_id
    assert delivery.parent_id == consume.span_id
    assert [s.instance for s in (operation, insert, publish)] == ["traced-a"] * 3
    assert delivery.instance == "traced-b"
    assert all(
        span.parent_id == publish.span_id for span in trace if consume_of_room_events(span.name)
    )
    assert {span.service.get("service.name") for span in trace} == {SERVICE_NAME}
    assert insert.attributes["db.system.name"] == "mongodb"
    assert publish.attributes["messaging.system"] == "kafka"
    assert delivery.attributes["plop.room.id"] == room_id


async def test_a_query_s_store_reads_are_children_of_its_operation(
    traced_pair: tuple[ServerProcess, ServerProcess], receiver: OtlpReceiver
) -> None:
    a, _ = traced_pair
    alice, bob = await sign_up(a), await sign_up(a)
    room_id = await direct_room(a, alice, bob)
    await send(a, alice, room_id, "read back")
    seen = {span.span_id for span in receiver.spans}
    history = await as_user(a, bob, HISTORY, r=room_id, last=10)
    assert [edge["node"]["text"] for edge in history["messages"]["edges"]] == ["read back"]

    def read_under_query(spans: list[ReceivedSpan]) -> bool:
        queries = {
            span.span_id
            for span in spans
            if span.name == "graphql.query messages" and span.span_id not in seen
        }
        return any(span.parent_id in queries and span.name == "find messages" for span in spans)

    await receiver.wait_for(read_under_query)


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_the_embedded_default_makes_the_same_trace_in_its_one_process(
    traced_embedded: ServerProcess, receiver: OtlpReceiver, subprotocol: str
) -> None:
    alice, bob = await sign_up(traced_embedded), await sign_up(traced_embedded)
    room_id = await direct_room(traced_embedded, alice, bob)
    async with (
        ws_session(traced_embedded, subprotocol, bob.token) as session,
        subscribed(traced_embedded, session, MESSAGE_ADDED, r=room_id) as live,
    ):
        sent = await send(traced_embedded, alice, room_id, "followed in one process")
        assert (await live.next())["messageAdded"]["id"] == sent["id"]

    spans = await receiver.wait_for(
        holds(
            sent["id"],
            is_(SEND_OPERATION),
            publish_of_room_events,
            consume_of_room_events,
            is_(DELIVERY),
        )
    )
    trace = message_trace(spans, sent["id"])
    operation = only(trace, is_(SEND_OPERATION))
    publish = only(trace, publish_of_room_events)
    consume = only(trace, consume_of_room_events)
    delivery = only(trace, is_(DELIVERY))
    assert operation.parent_id == ""
    assert publish.parent_id == operation.span_id
    assert consume.parent_id == publish.span_id
    assert delivery.parent_id == consume.span_id
    assert publish.attributes["messaging.system"] == "memory"
    assert {span.instance for span in trace} == {"traced-embedded"}


# A context a client might send, hoping to join (or flood) the operator's traces.
FORGED_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
FORGED_TRACEPARENT = f"00-{FORGED_TRACE_ID}-b7ad6b7169203331-01"


async def test_a_client_s_traceparent_is_not_followed_and_a_broken_document_is_traced_plainly(
    traced_embedded: ServerProcess, receiver: OtlpReceiver
) -> None:
    alice, bob = await sign_up(traced_embedded), await sign_up(traced_embedded)
    room_id = await direct_room(traced_embedded, alice, bob)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        ws_session(traced_embedded, SUBPROTOCOLS[0], bob.token) as session,
        subscribed(traced_embedded, session, MESSAGE_ADDED, r=room_id) as live,
    ):
        headers = {"Authorization": f"Bearer {alice.token}", "traceparent": FORGED_TRACEPARENT}
        reply = await client.post(
            traced_embedded.http_url,
            json={"query": SEND, "variables": {"r": room_id, "t": "forged", "c": None}},
            headers=headers,
        )
        sent = reply.json()["data"]["sendMessage"]
        assert (await live.next())["messageAdded"]["id"] == sent["id"]
        broken = await client.post(
            traced_embedded.http_url, json={"query": "mutation { sendMessage("}, headers=headers
        )
    assert broken.status_code < 500
    assert broken.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    spans = await receiver.wait_for(
        lambda spans: (
            holds(sent["id"], is_(SEND_OPERATION))(spans)
            and any(span.name == "graphql.invalid" for span in spans)
        )
    )
    operation = only(message_trace(spans, sent["id"]), is_(SEND_OPERATION))
    assert operation.parent_id == ""
    assert operation.trace_id != FORGED_TRACE_ID
    assert all(span.trace_id != FORGED_TRACE_ID for span in spans)
