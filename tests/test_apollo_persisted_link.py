"""Apollo Client's own persisted-queries link (from npm, run by Node.js) against Plop,
unchanged: hashes alone over POST, or over GET for queries (``useGETForHashedQueries``)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest

from tests.support.chat import direct_room, history_seqs
from tests.support.clients import metric, sign_up
from tests.support.server import ServerProcess
from tests.support.services import REPO

NODE_CLIENTS = REPO / "scripts" / "node-clients.sh"
# npm ci on a fresh machine, then four operations.
NODE_TIMEOUT_SECONDS = 150.0
OUTCOMES = ("hit", "miss", "registered")


async def apollo_run(server: ServerProcess, token: str, room_id: str, method: str) -> list[Any]:
    """What tests/http_audit/apollo_apq.mjs printed: one result per operation and round."""
    tag = secrets.token_hex(6)
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(NODE_CLIENTS),
        "apollo_apq.mjs",
        server.http_url,
        token,
        room_id,
        tag,
        method,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(NODE_TIMEOUT_SECONDS):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"the client did not run:\n{stderr.decode(errors='replace')}"
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


async def outcomes(server: ServerProcess) -> dict[str, float]:
    return {
        outcome: await metric(server, f'plop_persisted_queries_total{{outcome="{outcome}"}}')
        for outcome in OUTCOMES
    }


@pytest.mark.parametrize("method", ["post", "get"])
async def test_apollo_persisted_queries_link_registers_once_then_sends_hashes_alone(
    server_a: ServerProcess, method: str
) -> None:
    alice = await sign_up(server_a, "apollo")
    bob = await sign_up(server_a, "apollo")
    room_id = await direct_room(server_a, alice, bob)
    before = await outcomes(server_a)

    results = await apollo_run(server_a, alice.token, room_id, method)

    me = {"__typename": "User", "id": alice.id, "username": alice.username}
    assert [(r["operation"], r["round"], r.get("data")) for r in results] == [
        ("query", 1, {"me": me}),
        ("mutation", 1, {"sendMessage": {"__typename": "Message", "seq": 1, "text": "apollo 1"}}),
        ("query", 2, {"me": me}),
        ("mutation", 2, {"sendMessage": {"__typename": "Message", "seq": 2, "text": "apollo 2"}}),
    ]
    after = await outcomes(server_a)
    # The first round: the hash alone missed, then the text came with it and was
    # stored; the second round sent the hashes alone.
    assert {o: after[o] - before[o] for o in OUTCOMES} == {"miss": 2, "registered": 2, "hit": 2}
    # Each mutation ran once: a miss runs nothing.
    assert await history_seqs(server_a, alice, room_id) == [1, 2]
