"""The edges an attacker tries: the operator's endpoints on the public port, log lines
forged through client strings, and names that hide or reorder their characters.

One server of this module's own serves /metrics and /readyz on an admin port
(PLOP_ADMIN_PORT), with its Redis behind a proxy that a test may cut.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx
import psutil
import pytest
import pytest_asyncio

from models import RoomDoc
from models.room import RoomKind
from pubsub.events import MessageData
from push.worker import notification_for
from tests.conftest import RUN_ID
from tests.support.chat import CREATE_GROUP, as_user, group_room, send
from tests.support.clients import (
    SIGN_UP,
    error_code,
    get,
    http_session,
    readiness_becomes,
    sign_up,
    unique_name,
)
from tests.support.server import ServerProcess, free_port
from tests.support.tcp_proxy import TcpProxy, proxy_for

# What a record's line starts with in the text format: its time and level.
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# Characters that hide or reorder text: a right-to-left override, an isolate, the
# Arabic letter mark, a line separator, a zero-width space, a newline.
HIDDEN = ("\u202e", "\u2067", "\u061c", "\u2028", "\u200b", "\n")
# Emoji sequences joined by zero-width joiners and tags: a family, a skin-toned
# profession, Scotland's flag. They are text, and titles keep them.
EMOJI_SEQUENCES = (
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f469\U0001f3fd\u200d\U0001f4bb",
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
)
# Hebrew words, written right to left: "shalom", "team", "world".
SHALOM, TEAM, WORLD = (
    "\u05e9\u05dc\u05d5\u05dd",
    "\u05e6\u05d5\u05d5\u05ea",
    "\u05e2\u05d5\u05dc\u05dd",
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def redis_proxy(real_env: dict[str, str]) -> AsyncIterator[TcpProxy]:
    """A proxy in front of the shared Redis, which a test may cut."""
    async with proxy_for(real_env["PLOP_REDIS_URL"]) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def admin_port() -> int:
    return free_port()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def edge_server(
    real_env: dict[str, str], redis_proxy: TcpProxy, admin_port: int
) -> AsyncIterator[ServerProcess]:
    """A server with an admin port, its Redis (the run's database) through the proxy."""
    database = urlsplit(real_env["PLOP_REDIS_URL"]).path
    server = ServerProcess(
        f"{RUN_ID}-edges",
        {
            **real_env,
            "PLOP_INSTANCE_ID": "edges",
            "PLOP_REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}{database}",
            "PLOP_ADMIN_PORT": str(admin_port),
        },
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def admin_url(admin_port: int) -> str:
    return f"http://127.0.0.1:{admin_port}"


# ---- 9a: /metrics and /readyz ------------------------------------------------------


async def test_the_public_port_answers_neither_metrics_nor_readyz_when_an_admin_port_is_set(
    edge_server: ServerProcess, admin_url: str
) -> None:
    public, admin = edge_server.base_url, admin_url
    assert (await get(f"{public}/metrics")).status_code == 404
    assert (await get(f"{public}/readyz")).status_code == 404
    assert (await get(f"{public}/healthz")).status_code == 200

    metrics = await get(f"{admin}/metrics")
    assert metrics.status_code == 200
    assert 'plop_instance_info{instance_id="edges"} 1.0' in metrics.text
    ready = await get(f"{admin}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    # The admin port serves the operator's endpoints, not the API.
    assert (await get(f"{admin}/graphql")).status_code == 404
    assert (await get(f"{admin}/")).status_code == 404


async def test_the_admin_port_listens_on_loopback_by_default(
    edge_server: ServerProcess, admin_port: int
) -> None:
    listening = [
        connection.laddr
        for connection in psutil.Process(edge_server.pid).net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == admin_port
    ]
    assert [address.ip for address in listening] == ["127.0.0.1"], listening


async def test_readyz_names_a_backend_that_is_down_without_its_host_or_port(
    edge_server: ServerProcess, redis_proxy: TcpProxy, admin_url: str
) -> None:
    await readiness_becomes(admin_url, 200)
    offset = edge_server.log_size()
    await redis_proxy.stop()
    try:
        down = await readiness_becomes(admin_url, 503)
    finally:
        await redis_proxy.start()
    assert down == {
        "status": "unavailable",
        "failing": ["redis"],
        "backends": {"mongo": "ok", "redis": "unavailable", "broker": "ok"},
    }
    # What went wrong (here "... connecting to 127.0.0.1:PORT") is the operator's, in the log.
    assert str(redis_proxy.port) in edge_server.log_since(offset)
    await readiness_becomes(admin_url, 200)


# ---- 9b: client strings in log lines -----------------------------------------------


async def test_a_client_string_cannot_forge_a_log_line_or_a_field(
    edge_server: ServerProcess,
) -> None:
    marker = f"FORGED-{secrets.token_hex(4)}"
    forged_start = "1999-01-01 00:00:00,000 ERROR plop.http: "
    forged_line = f"\n{forged_start}{marker} status=500"
    offset = edge_server.log_size()
    async with httpx.AsyncClient(timeout=10) as client:
        for operation_name in (f"Me{forged_line}", f"Me\u202e user_id={marker}"):
            await client.post(
                edge_server.http_url,
                json={"query": "query Me { __typename }", "operationName": operation_name},
            )
        await client.get(f"{edge_server.base_url}/{quote(forged_line)}")
    logged = edge_server.log_since(offset)
    carrying = [line for line in logged.splitlines() if marker in line]
    assert len(carrying) >= 3, logged  # both operations' request lines and the path's
    for line in carrying:
        assert not line.startswith(forged_start), f"a client's string began a line: {line!r}"
        assert RECORD_START.match(line), f"a client's string began a line: {line!r}"
        assert f"user_id={marker}" not in QUOTED.sub("", line), f"a forged field: {line!r}"
    assert "\u202e" not in logged
    assert f"\\n{forged_start}" in logged  # escaped, not dropped


# ---- 9d: hidden characters in titles and names -------------------------------------


@pytest.mark.parametrize("hidden", HIDDEN)
async def test_a_room_title_with_a_hidden_character_is_refused(
    edge_server: ServerProcess, hidden: str
) -> None:
    owner = await sign_up(edge_server, "owner")
    async with http_session(edge_server, owner.token) as session:
        code = await error_code(session, CREATE_GROUP, t=f"Team{hidden}gnp.exe", m=[])
    assert code == "BAD_USER_INPUT"


async def test_a_refused_title_says_why_and_a_right_to_left_title_is_kept(
    edge_server: ServerProcess,
) -> None:
    owner = await sign_up(edge_server, "owner")
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            edge_server.http_url,
            json={"query": CREATE_GROUP, "variables": {"t": "pay\u202egnp.exe", "m": []}},
            headers={"Authorization": f"Bearer {owner.token}"},
        )
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "title must not contain control or format characters" in error["message"]
    # Right-to-left letters are text, not formatting.
    room = await as_user(edge_server, owner, CREATE_GROUP, t=f"{TEAM} Team", m=[])
    assert room["createGroupRoom"]["title"] == f"{TEAM} Team"


@pytest.mark.parametrize("emoji", EMOJI_SEQUENCES)
async def test_a_title_keeps_an_emoji_sequence_joined_by_zero_width_joiners(
    edge_server: ServerProcess, emoji: str
) -> None:
    owner = await sign_up(edge_server, "owner")
    room = await as_user(edge_server, owner, CREATE_GROUP, t=f"{emoji} home", m=[])
    assert room["createGroupRoom"]["title"] == f"{emoji} home"


@pytest.mark.parametrize("hidden", ["\u061c", "\u2028", "\u00ad"])
async def test_a_display_name_with_a_bidi_mark_or_separator_is_refused(
    edge_server: ServerProcess, hidden: str
) -> None:
    async with http_session(edge_server) as session:
        code = await error_code(
            session,
            SIGN_UP,
            username=unique_name("mark"),
            password="correct horse battery",
            displayName=f"Ali{hidden}ce",
        )
    assert code == "BAD_USER_INPUT"


async def test_message_text_keeps_its_bidi_marks(edge_server: ServerProcess) -> None:
    sender = await sign_up(edge_server, "rtl")
    room_id = await group_room(edge_server, sender, [], title="rtl")
    text = f"\u200f{SHALOM}, world \u2067{WORLD}\u2069"
    assert (await send(edge_server, sender, room_id, text))["text"] == text


def test_a_push_title_drops_hidden_characters_of_names_stored_before_the_rule() -> None:
    message = MessageData(
        id="m1",
        room_id="r1",
        seq=1,
        sender_id="u1",
        sender_username="mallory",
        sender_display_name="Bob\u202e\u2066 (@bob)\u2069\n",
        text=f"\u200f{SHALOM}",
        client_id=None,
        created_at=datetime.now(UTC),
        edited_at=None,
        deleted=False,
    )
    room = RoomDoc.model_construct(kind=RoomKind.GROUP, title="Team\u202egnp.exe\u2028")
    notification = notification_for(message, room)
    assert notification.title == "Bob (@bob) (@mallory) in Teamgnp.exe"
    assert notification.body == f"\u200f{SHALOM}"  # message text keeps its marks
