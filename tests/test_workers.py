"""``plop serve --workers N``: N full instances on one port, refused on the embedded
default."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest_asyncio

from tests.conftest import RUN_ID
from tests.support.chat import MESSAGE_ADDED, SEND, direct_room
from tests.support.clients import sign_up
from tests.support.raw_socket import RawSocket, raw_socket
from tests.support.server import ServerProcess, free_port
from tests.test_serve_start import PLOP, embedded_env

WORKERS = 2
# The kernel hands each new connection to one of the workers; a few dozen
# connections reach both.
FIND_WORKERS_SECONDS = 30.0
MAX_SOCKETS = 40


def instance_of(metrics: str) -> str:
    found = re.search(r'^plop_instance_info\{instance_id="([^"]+)"\} 1\.0$', metrics, re.M)
    assert found, "no plop_instance_info in /metrics"
    return found.group(1)


def open_websockets(metrics: str) -> int:
    found = re.search(r"^plop_websockets_open (\S+)$", metrics, re.M)
    return int(float(found.group(1))) if found else 0


class Worker:
    """A keep-alive HTTP connection that one worker answers, and that worker's id."""

    def __init__(self, client: httpx.AsyncClient, instance_id: str) -> None:
        self.client = client
        self.instance_id = instance_id

    async def metrics(self) -> str:
        text = (await self.client.get("/metrics")).text
        assert instance_of(text) == self.instance_id, "the connection moved to another worker"
        return text


@pytest_asyncio.fixture(loop_scope="session")
async def two_workers(real_env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(
        f"{RUN_ID}-workers",
        {**real_env, "PLOP_INSTANCE_ID": "workers"},
        args=("--workers", str(WORKERS)),
    )
    await server.start()
    yield server
    await server.stop()


async def find_workers(server: ServerProcess, stack: AsyncExitStack) -> list[Worker]:
    """One kept connection per worker, found by opening connections until each answered."""
    workers: dict[str, Worker] = {}
    async with asyncio.timeout(FIND_WORKERS_SECONDS):
        while len(workers) < WORKERS:
            client = httpx.AsyncClient(base_url=server.base_url, timeout=10)
            instance_id = instance_of((await client.get("/metrics")).text)
            if instance_id in workers:
                await client.aclose()
                continue
            stack.push_async_callback(client.aclose)
            workers[instance_id] = Worker(client, instance_id)
    return list(workers.values())


async def test_two_workers_answer_and_deliver_to_each_other(two_workers: ServerProcess) -> None:
    alice, bob = await sign_up(two_workers), await sign_up(two_workers)
    room_id = await direct_room(two_workers, alice, bob)
    async with AsyncExitStack() as stack:
        workers = await find_workers(two_workers, stack)
        assert len({worker.instance_id for worker in workers}) == WORKERS
        assert all(worker.instance_id.startswith("workers-") for worker in workers)

        # Sockets until each worker holds one: the one whose count grew took it.
        on: dict[str, RawSocket] = {}
        for _ in range(MAX_SOCKETS):
            before = [open_websockets(await worker.metrics()) for worker in workers]
            opened = await stack.enter_async_context(
                raw_socket(two_workers, "graphql-transport-ws", bob.token)
            )
            after = [open_websockets(await worker.metrics()) for worker in workers]
            (taker,) = [w for w, b, a in zip(workers, before, after, strict=True) if a > b]
            await opened.subscribe("1", MESSAGE_ADDED, {"r": room_id, "after": 0})
            on.setdefault(taker.instance_id, opened)
            if len(on) == WORKERS:
                break
        assert len(on) == WORKERS, "every socket went to the same worker"

        # Sent through each worker in turn; every socket, on either worker, gets both.
        auth = {"Authorization": f"Bearer {alice.token}"}
        for n, worker in enumerate(workers, start=1):
            variables = {"r": room_id, "t": f"through {worker.instance_id}", "c": f"w{n}"}
            response = await worker.client.post(
                "/graphql", json={"query": SEND, "variables": variables}, headers=auth
            )
            assert response.json()["data"]["sendMessage"]["seq"] == n, response.text
            await worker.metrics()  # still the same worker
        for instance_id, subscriber in on.items():
            frames = [await subscriber.frame() for _ in range(WORKERS)]
            texts = [frame["payload"]["data"]["messageAdded"]["text"] for frame in frames]
            assert texts == [f"through {worker.instance_id}" for worker in workers], instance_id


async def test_workers_are_refused_on_the_embedded_default() -> None:
    process = await asyncio.create_subprocess_exec(
        PLOP,
        "serve",
        "--port",
        str(free_port()),
        "--workers",
        "2",
        env=embedded_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(10):
        output, _ = await process.communicate()
    assert process.returncode not in (0, None)
    text = output.decode()
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1] == (
        "Error: --workers 2 needs the real backends: PLOP_MONGO_URL, PLOP_BROKER_URL, "
        "PLOP_REDIS_URL point at memory://, an in-process stand-in that each worker "
        "would hold apart"
    )


async def test_workers_on_a_port_in_use_fail_at_once(real_env: dict[str, str]) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        process = await asyncio.create_subprocess_exec(
            PLOP,
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            env={**embedded_env(), **real_env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(10):
            output, _ = await process.communicate()
    assert process.returncode not in (0, None)
    lines = output.decode().strip().splitlines()
    assert lines[-1] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
