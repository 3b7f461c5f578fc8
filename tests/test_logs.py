"""Serving and logs: one format for Plop's and uvicorn's records, JSON on request,
no secret in any line, and a start that fails in one line."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys

import httpx
import pytest

from tests.conftest import RUN_ID
from tests.support.clients import call, http_session, unique_name, ws_session
from tests.support.server import LOG_DIR, PLOP, ServerProcess, free_port
from tests.support.services import REPO

LOG_IN = """
mutation LogIn($username: String!, $password: String!) {
  logIn(username: $username, password: $password) { token user { id } }
}
"""
SIGN_UP_ONLY = """
mutation SignUp($username: String!, $password: String!) {
  signUp(username: $username, password: $password) { token }
}
"""
# An unreachable backend must stop the start well within this (the backend
# timeout is 1 s here; the rest is Python importing Plop on a busy machine).
FAILED_START_TIMEOUT_SECONDS = 45.0


def log_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.log_path.read_text().splitlines() if line.strip()]


async def test_json_logs_parse_line_by_line_and_hold_no_token_or_password() -> None:
    server = ServerProcess(
        f"{RUN_ID}-json-logs", {"PLOP_LOG_FORMAT": "json"}, args=("--log-level", "debug")
    )
    await server.start()
    username, password = unique_name("log"), f"pw-{secrets.token_hex(8)}"
    try:
        async with http_session(server) as session:
            first = await call(session, SIGN_UP_ONLY, username=username, password=password)
            logged_in = await call(session, LOG_IN, username=username, password=password)
        token = logged_in["logIn"]["token"]
        user_id = logged_in["logIn"]["user"]["id"]
        async with http_session(server, token) as session:
            await call(session, "query Me { me { id } }")
        async with ws_session(server, "graphql-transport-ws", token) as socket:
            await call(socket, "query MeOverSocket { me { id } }")
    finally:
        await server.stop()

    text = server.log_path.read_text()
    for secret in (password, token, first["signUp"]["token"]):
        # Not even part of one: a trace that shortens a frame keeps its start and end.
        for part in (secret, secret[:12], secret[-12:]):
            assert part not in text, "a secret reached the log"
    entries = []
    for line in log_lines(server):
        entry = json.loads(line)  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        entries.append(entry)
    loggers = {entry["logger"] for entry in entries}
    assert "uvicorn.error" in loggers and "plop.http" in loggers, loggers
    me = [e for e in entries if e["logger"] == "plop.http" and e.get("operation") == "Me"]
    assert len(me) == 1, me
    assert me[0]["user_id"] == user_id
    assert me[0]["status"] == 200 and me[0]["path"] == "/graphql"
    assert isinstance(me[0]["duration_ms"], float) and len(me[0]["request_id"]) >= 8


async def test_a_request_id_is_kept_and_sent_back(embedded_server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{embedded_server.base_url}/healthz", headers={"x-request-id": "req-42.abc"}
        )
        fresh = await client.get(
            f"{embedded_server.base_url}/healthz", headers={"x-request-id": "bad id\twith tab"}
        )
    assert response.headers["x-request-id"] == "req-42.abc"
    assert fresh.headers["x-request-id"] not in ("", "bad id\twith tab")


async def test_text_logs_name_graphiql_and_the_web_page(embedded_server: ServerProcess) -> None:
    text = embedded_server.log_path.read_text()
    port = embedded_server.port
    assert f"GraphiQL at http://127.0.0.1:{port}/graphql" in text
    assert f"web page at http://127.0.0.1:{port}/\n" in text
    # uvicorn's records are in Plop's format: time, level, logger name.
    started = next(line for line in text.splitlines() if "Started server process" in line)
    assert " INFO uvicorn.error: " in started, started


async def test_log_level_option_quiets_info() -> None:
    server = ServerProcess(f"{RUN_ID}-quiet", {}, args=("--log-level", "warning"))
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{server.base_url}/healthz")).status_code == 200
    finally:
        await server.stop()
    lines = log_lines(server)
    assert lines, "the embedded-mode warning is logged at WARNING"
    assert not [line for line in lines if " INFO " in line], lines


async def test_reload_serves_under_a_reloader() -> None:
    server = ServerProcess(f"{RUN_ID}-reload", {}, args=("--reload",))
    await server.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{server.base_url}/readyz")).status_code == 200
    finally:
        await server.stop()
    assert "Started reloader process" in server.log_path.read_text()


@pytest.mark.parametrize(
    ("variable", "url", "shown"),
    [
        ("PLOP_REDIS_URL", "redis://127.0.0.1:{port}/0", "redis is unreachable"),
        (
            "PLOP_REDIS_URL",
            "redis+cluster://plop:hunter2secret@127.0.0.1:{port},127.0.0.1:{port}",
            "redis is unreachable",
        ),
        (
            "PLOP_MONGO_URL",
            "mongodb://plop:hunter2secret@127.0.0.1:{port}/plop",
            "mongo is unreachable",
        ),
        ("PLOP_BROKER_URL", "kafka://127.0.0.1:{port}", "broker is unreachable"),
    ],
)
async def test_an_unreachable_backend_stops_the_start_in_one_line(
    variable: str, url: str, shown: str
) -> None:
    closed_port = free_port()  # nothing listens there
    backend_url = url.format(port=closed_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLOP_")}
    env.update({variable: backend_url, "PLOP_BACKEND_TIMEOUT_SECONDS": "1"})
    log_path = LOG_DIR / f"{RUN_ID}-unreachable-{variable.lower()}.log"
    process = await asyncio.create_subprocess_exec(
        str(PLOP),
        "serve",
        "--port",
        str(free_port()),
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(FAILED_START_TIMEOUT_SECONDS):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode(errors="replace")
    log_path.write_text(text)
    sys.stdout.write(text)
    assert process.returncode != 0
    assert "Traceback" not in text
    named = [line for line in text.splitlines() if shown in line]
    assert len(named) == 1, text
    assert "ERROR" in named[0] and f"127.0.0.1:{closed_port}" in named[0]
    assert "hunter2secret" not in text
