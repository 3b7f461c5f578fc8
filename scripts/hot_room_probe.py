"""How many messages a second one room stores while C senders send into it at once.

A probe for docs/architecture.md's "hot rooms", not a test: it starts one or two
``plop serve`` instances on the real services (PLOP_SERVICES_DIR as the suite uses
it), fills one group room with C senders, each sending its next message only once
its last was answered, for a few seconds, and prints stored messages a second and
the answers other than a message (by extensions.code).

    PYTHONPATH=. .venv/bin/python scripts/hot_room_probe.py --senders 4 16 64 --instances 2
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections import Counter

import httpx

from devtools.processes import LOAD_TEST_LIMITS
from tests.support.chat import SEND, group_room
from tests.support.clients import Account, sign_up
from tests.support.server import ServerProcess
from tests.support.services import start_real_services


async def probe(servers: list[ServerProcess], senders: int, seconds: float, spread: bool) -> None:
    accounts = [await sign_up(servers[0]) for _ in range(senders)]
    if spread:  # the comparison: each sender alone in a room of its own
        rooms = [await group_room(servers[0], account, []) for account in accounts]
    else:
        rooms = [await group_room(servers[0], accounts[0], accounts[1:])] * senders
    refused: Counter[str] = Counter()
    stored = 0
    deadline = time.monotonic() + seconds

    async def sender(client: httpx.AsyncClient, index: int, account: Account) -> None:
        nonlocal stored
        server = servers[index % len(servers)]
        headers = {"Authorization": f"Bearer {account.token}"}
        while time.monotonic() < deadline:
            variables = {"r": rooms[index], "t": "hot", "c": secrets.token_hex(8)}
            answer = await client.post(
                server.http_url, json={"query": SEND, "variables": variables}, headers=headers
            )
            errors = answer.json().get("errors")
            if errors:
                refused[str(errors[0].get("extensions", {}).get("code"))] += 1
            else:
                stored += 1

    # Raw HTTP posts, not the gql client: its parsing per call would make the probe,
    # not the server, the bottleneck at tens of senders.
    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=60) as client, asyncio.TaskGroup() as group:
        for index, account in enumerate(accounts):
            group.create_task(sender(client, index, account))
    elapsed = time.monotonic() - started
    print(  # noqa: T201 - a probe's output
        f"{len(servers)} instance(s), {senders:3d} senders in "
        f"{'a room each' if spread else 'one room'}: "
        f"{stored / elapsed:7.1f} stored/s ({stored} in {elapsed:.1f} s), refused {dict(refused)}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, nargs="+", default=[4, 16, 32, 64])
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spread", action="store_true", help="each sender in its own room")
    options = parser.parse_args()
    services = start_real_services()
    run = secrets.token_hex(4)
    env = {
        "PLOP_MONGO_URL": services.mongo_url_for(f"plop_probe_{run}"),
        "PLOP_BROKER_URL": services.broker_url,
        "PLOP_REDIS_URL": services.redis_url.rpartition("/")[0] + "/15",
        "PLOP_TOPIC_PREFIX": f"plop-probe-{run}",
        **LOAD_TEST_LIMITS,
    }
    servers = [
        ServerProcess(f"probe-{run}-{n}", {**env, "PLOP_INSTANCE_ID": f"probe{n}"})
        for n in range(options.instances)
    ]
    for server in servers:
        await server.start()
    try:
        for senders in options.senders:
            await probe(servers, senders, options.seconds, options.spread)
    finally:
        for server in servers:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
