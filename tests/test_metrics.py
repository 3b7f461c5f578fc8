"""/metrics as a real server exports it: what the dashboard charts exists, and moves."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from client import PlopClient
from tests.support.clients import EVENT_TIMEOUT_SECONDS, LEGACY_WS, SUBPROTOCOLS, unique_name
from tests.support.raw_socket import raw_socket
from tests.support.server import ServerProcess
from tests.test_client import settled
from tests.test_docker_files import dashboard_panels, dashboard_queries

PASSWORD = "correct horse battery"
# The suffixes Prometheus gives the series of a family, by the family's type.
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}
# The metrics each of which the dashboard gives a panel of its own.
PANEL_METRICS = (
    "plop_messages_sent_total",
    "plop_deliveries_total",
    "plop_push_total",
    "plop_relay_backlog",
    "plop_kafka_consumer_lag",
    "plop_sockets_refused_total",
)


async def metrics_text(server: ServerProcess) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{server.base_url}/metrics")
    assert response.status_code == 200, response.text
    return response.text


def exported_names(text: str) -> set[str]:
    """Every series name the exposition can hold: family names, their suffixes, samples."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series (0 if it is not there yet)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


async def wait_for(server: ServerProcess, check: Callable[[str], bool], what: str) -> str:
    """Waits until the server's /metrics passes ``check``; returns that exposition."""
    text = ""
    try:
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            # Polls another process's /metrics: there is no event to await across processes.
            while not check(text := await metrics_text(server)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError as exc:
        raise AssertionError(f"{what}; /metrics has:\n{text}") from exc
    return text


async def test_every_dashboard_query_names_a_metric_the_server_exports(
    server_a: ServerProcess,
) -> None:
    exported = exported_names(await metrics_text(server_a))
    queries = dashboard_queries()
    assert queries, "the dashboard has no queries"
    for query in queries:
        names = re.findall(r"\bplop_\w+", query)
        assert names, f"{query!r} reads no Plop metric"
        for name in names:
            assert name in exported, f"{query!r} reads {name}, which /metrics does not export"


def test_the_dashboard_has_a_panel_for_each_operational_metric() -> None:
    for metric in PANEL_METRICS:
        panels = [
            panel["title"]
            for panel in dashboard_panels()
            if any(
                re.search(rf"\b{metric}\b", str(target.get("expr", "")))
                for target in panel.get("targets", [])
            )
        ]
        assert panels, f"no dashboard panel charts {metric}"


async def test_sends_deliveries_and_refused_tokens_are_counted(server_a: ServerProcess) -> None:
    before = await metrics_text(server_a)
    async with PlopClient(server_a.http_url) as alice, PlopClient(server_a.http_url) as bob:
        await alice.sign_up(unique_name("alice"), PASSWORD)
        bob_id = (await bob.sign_up(unique_name("bob"), PASSWORD)).user.id
        room = await alice.create_direct_room(bob_id)
        async with settled(server_a):
            stream = bob.messages(room.id, after_seq=0, max_attempts=1)
            sent = await alice.send_message(room.id, "counted")
            async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                received = await anext(stream)
            await stream.aclose()
    assert received.seq == sent.seq

    for subprotocol in SUBPROTOCOLS:
        async with websockets.connect(server_a.ws_url, subprotocols=[subprotocol]) as socket:  # type: ignore[list-item]
            await socket.send(
                json.dumps({"type": "connection_init", "payload": {"authToken": "not-a-token"}})
            )
            with_error = subprotocol == LEGACY_WS  # graphql-ws answers connection_error
            try:
                async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                    reply = json.loads(await socket.recv())
                assert with_error and reply["type"] == "connection_error", reply
            except websockets.ConnectionClosed as closed:
                assert not with_error and closed.rcvd is not None and closed.rcvd.code == 4403

    after = await metrics_text(server_a)

    def grew(name: str, by: float, **labels: str) -> bool:
        return sample(after, name, **labels) - sample(before, name, **labels) >= by

    assert grew("plop_messages_sent_total", 1)
    assert grew("plop_deliveries_total", 1)
    assert grew("plop_sockets_refused_total", 2, reason="bad_token")


async def test_kafka_lag_and_relay_backlog_are_reported_by_a_server_on_kafka(
    server_a: ServerProcess, real_env: dict[str, str]
) -> None:
    topic = f"{real_env['PLOP_TOPIC_PREFIX']}.room-events"

    def reported(text: str) -> bool:
        lag = [
            found
            for family in text_string_to_metric_families(text)
            for found in family.samples
            if found.name == "plop_kafka_consumer_lag"
            and found.labels == {"topic": topic, "consumer": "broadcast"}
        ]
        backlog = re.search(r"^plop_relay_backlog (\S+)$", text, re.MULTILINE)
        return bool(lag) and lag[0].value >= 0 and backlog is not None

    await wait_for(server_a, reported, f"no consumer lag for {topic} or no relay backlog")


async def test_init_timeouts_and_caps_are_counted_by_reason() -> None:
    env = {
        "PLOP_CONNECTION_INIT_TIMEOUT_SECONDS": "0.5",
        "PLOP_MAX_SUBSCRIPTIONS_PER_CONNECTION": "1",
        "PLOP_MAX_SOCKETS_PER_USER": "1",
    }
    server = ServerProcess(f"metrics-refusals-{unique_name()}", env)
    await server.start()
    try:
        for subprotocol in SUBPROTOCOLS:
            async with websockets.connect(server.ws_url, subprotocols=[subprotocol]) as socket:  # type: ignore[list-item]
                async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
                    try:
                        while True:
                            await socket.recv()
                    except websockets.ConnectionClosed as closed:
                        assert closed.rcvd is not None and closed.rcvd.code == 4408

        async with PlopClient(server.http_url) as alice, PlopClient(server.http_url) as bob:
            token = (await alice.sign_up(unique_name("alice"), PASSWORD)).token
            bob_id = (await bob.sign_up(unique_name("bob"), PASSWORD)).user.id
            room = await alice.create_direct_room(bob_id)
        query = "subscription($r: ID!) { messageAdded(roomId: $r) { seq } }"
        for subprotocol in SUBPROTOCOLS:
            async with raw_socket(server, subprotocol, token) as socket:
                await socket.subscribe("1", query, {"r": room.id})
                await socket.subscribe("2", query, {"r": room.id})
                refused = await socket.frame()
                assert refused["type"] == "error" and refused["id"] == "2", refused
                try:
                    async with raw_socket(server, subprotocol, token):
                        raise AssertionError("a second socket of the user was accepted")
                except (AssertionError, websockets.ConnectionClosed) as refusal:
                    # graphql-ws answers connection_error, graphql-transport-ws closes.
                    assert "connection_error" in str(refusal) or isinstance(
                        refusal, websockets.ConnectionClosed
                    ), refusal

        text = await metrics_text(server)
        assert sample(text, "plop_sockets_refused_total", reason="init_timeout") == 2
        assert sample(text, "plop_sockets_refused_total", reason="subscription_limit") == 2
        assert sample(text, "plop_sockets_refused_total", reason="socket_cap") == 2
        assert sample(text, "plop_sockets_refused_total", reason="bad_token") == 0
    finally:
        await server.stop()
