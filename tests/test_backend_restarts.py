"""A backend that goes away and comes back: both instances serve again on their own.

Redis and the MongoDB-protocol server are reached through TCP proxies of the test's
own (cutting the proxy is the backend going away, restoring it is the backend back),
so the shared services are never touched. While a backend is gone a send answers
UNAVAILABLE within a few seconds, never INTERNAL, never a hang, and its retry with the
same clientId is stored once. Kafka advertises its own address to clients, so a proxy
cannot stand in for it: tests/support/kafka_outage.py stops and starts it for real.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gql.transport.exceptions import TransportQueryError
from redis.asyncio import Redis

from tests.conftest import RUN_ID
from tests.support.chat import MESSAGE_ADDED, SEND, as_user, direct_room, history_seqs
from tests.support.clients import (
    TRANSPORT_WS,
    Account,
    call,
    http_session,
    sign_up,
    subscribed,
    ws_session,
)
from tests.support.server import ServerProcess, free_port
from tests.support.tcp_proxy import TcpProxy

# A send while a backend is gone: Redis refuses at once; MongoDB's driver waits for a
# server up to the backend timeout (5 s) before it gives up.
OUTAGE_ANSWER_SECONDS = 8.0
# A restored backend is used again by the next connect, within a few retries.
RECOVERY_SECONDS = 20.0
ME = "query { me { id } }"


@asynccontextmanager
async def proxied(url: str, default_port: int) -> AsyncIterator[TcpProxy]:
    target = urlsplit(url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or default_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def through(url: str, proxy: TcpProxy) -> str:
    """The same URL with the proxy's port as its host's."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


async def two_instances(
    stack: AsyncExitStack, name: str, env: dict[str, str]
) -> list[ServerProcess]:
    servers = [
        ServerProcess(f"{RUN_ID}-{name}-{side}", {**env, "PLOP_INSTANCE_ID": f"{name}-{side}"})
        for side in ("a", "b")
    ]
    for server in servers:
        stack.push_async_callback(server.stop)
    await asyncio.gather(*(server.start() for server in servers))  # they start independently
    return servers


async def send_code(server: ServerProcess, sender: Account, room_id: str, client_id: str) -> str:
    """The error code a send answers with (the send must fail)."""
    async with http_session(server, sender.token) as session:
        try:
            await call(session, SEND, r=room_id, t=client_id, c=client_id)
        except TransportQueryError as exc:
            code: str = exc.errors[0]["extensions"]["code"] if exc.errors else "NONE"
            return code
    raise AssertionError("the send succeeded while its backend was gone")


async def send_once_back(
    server: ServerProcess, sender: Account, room_id: str, client_id: str
) -> dict[str, Any]:
    """Retries a send as a client would while UNAVAILABLE, until the backend is back."""
    async with asyncio.timeout(RECOVERY_SECONDS):
        while True:
            try:
                data = await as_user(server, sender, SEND, r=room_id, t=client_id, c=client_id)
            except TransportQueryError as exc:
                assert exc.errors and exc.errors[0]["extensions"]["code"] == "UNAVAILABLE", exc
                # The client's own back-off between retries.
                await asyncio.sleep(0.5)
                continue
            message: dict[str, Any] = data["sendMessage"]
            return message


async def outage_answer(
    server: ServerProcess, sender: Account, room_id: str, client_id: str
) -> str:
    started = time.monotonic()
    code = await asyncio.wait_for(
        send_code(server, sender, room_id, client_id), OUTAGE_ANSWER_SECONDS
    )
    assert time.monotonic() - started < OUTAGE_ANSWER_SECONDS
    return code


async def outage_answers(
    a: ServerProcess, b: ServerProcess, sender: Account, room_id: str, client_id: str
) -> list[str]:
    """Each instance's answer to the same send, asked side by side: each waits out the
    backend's timeout on its own, so there is no need to wait for them in turn."""
    return list(
        await asyncio.gather(
            outage_answer(b, sender, room_id, client_id),
            outage_answer(a, sender, room_id, client_id),
        )
    )


async def test_both_instances_serve_again_after_redis_comes_back(real_env: dict[str, str]) -> None:
    async with AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(proxied(real_env["PLOP_REDIS_URL"], 6379))
        env = {**real_env, "PLOP_REDIS_URL": through(real_env["PLOP_REDIS_URL"], proxy)}
        a, b = await two_instances(stack, "redis-restart", env)
        alice, bob = await sign_up(a), await sign_up(b)
        room_id = await direct_room(a, alice, bob)
        session = await stack.enter_async_context(ws_session(a, TRANSPORT_WS, bob.token))
        live = await stack.enter_async_context(
            subscribed(a, session, MESSAGE_ADDED, r=room_id, after=0)
        )
        first = await send_once_back(b, alice, room_id, "before")
        assert (await live.next())["messageAdded"]["seq"] == first["seq"] == 1

        # Presence of bob's open socket, as instance A registered it.
        redis = Redis.from_url(real_env["PLOP_REDIS_URL"], decode_responses=True)
        stack.push_async_callback(redis.aclose)
        presence = f"{real_env['PLOP_TOPIC_PREFIX']}:presence:{{user:{bob.id}}}"
        conns = f"{presence}:conns"
        assert await redis.exists(conns)

        await proxy.stop()
        assert await outage_answers(a, b, alice, room_id, "during") == ["UNAVAILABLE"] * 2
        # Redis comes back without the presence it had: the heartbeat brings it back.
        await redis.delete(conns, f"{presence}:state")
        await proxy.start()

        retried = await send_once_back(b, alice, room_id, "during")
        assert await send_once_back(a, alice, room_id, "during") == retried
        after = await send_once_back(a, alice, room_id, "after")
        assert [retried["seq"], after["seq"]] == [2, 3]
        assert [result["messageAdded"]["seq"] for result in await live.take(2)] == [2, 3]
        live.assert_idle()
        assert await history_seqs(b, bob, room_id) == [1, 2, 3]
        async with asyncio.timeout(RECOVERY_SECONDS):
            # Another process's heartbeat: nothing to await but the key itself.
            while not await redis.exists(conns):  # noqa: ASYNC110
                await asyncio.sleep(0.2)


async def test_both_instances_serve_again_after_mongodb_comes_back(
    real_env: dict[str, str],
) -> None:
    async with AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(proxied(real_env["PLOP_MONGO_URL"], 27017))
        env = {**real_env, "PLOP_MONGO_URL": through(real_env["PLOP_MONGO_URL"], proxy)}
        a, b = await two_instances(stack, "mongo-restart", env)
        alice, bob = await sign_up(a), await sign_up(b)
        room_id = await direct_room(a, alice, bob)
        session = await stack.enter_async_context(ws_session(a, TRANSPORT_WS, bob.token))
        live = await stack.enter_async_context(
            subscribed(a, session, MESSAGE_ADDED, r=room_id, after=0)
        )
        await send_once_back(b, alice, room_id, "before")
        assert (await live.next())["messageAdded"]["seq"] == 1

        await proxy.stop()
        assert await outage_answers(a, b, alice, room_id, "during") == ["UNAVAILABLE"] * 2
        await proxy.start()

        retried = await send_once_back(b, alice, room_id, "during")
        assert await send_once_back(a, alice, room_id, "during") == retried
        after = await send_once_back(a, alice, room_id, "after")
        assert [retried["seq"], after["seq"]] == [2, 3]
        assert [result["messageAdded"]["seq"] for result in await live.take(2)] == [2, 3]
        live.assert_idle()
        assert await history_seqs(b, bob, room_id) == [1, 2, 3]


class PrivateRedis:
    """A redis-server of the test's own, with an append-only file in a directory of
    its own, that the test may restart (the shared Redis is never touched)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--appendonly", "yes",
            "--save", "",
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = Redis.from_url(self.url)
        try:
            async with asyncio.timeout(RECOVERY_SECONDS):
                while True:
                    try:
                        await client.ping()
                        return
                    except OSError:
                        pass
                    except Exception as exc:  # redis' ConnectionError
                        if "connect" not in str(exc).lower():
                            raise
                    # Another process starting: no event to await.
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGTERM: redis-server flushes its append-only file and exits."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            await asyncio.to_thread(self._process.wait, RECOVERY_SECONDS)


async def test_a_session_survives_a_redis_restart(real_env: dict[str, str], tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path)
    await redis.start()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(redis.stop)
        server = ServerProcess(
            f"{RUN_ID}-private-redis",
            {**real_env, "PLOP_INSTANCE_ID": "private-redis", "PLOP_REDIS_URL": redis.url},
        )
        await server.start()
        stack.push_async_callback(server.stop)
        alice, bob = await sign_up(server), await sign_up(server)
        room_id = await direct_room(server, alice, bob)
        session = await stack.enter_async_context(ws_session(server, TRANSPORT_WS, bob.token))
        live = await stack.enter_async_context(
            subscribed(server, session, MESSAGE_ADDED, r=room_id, after=0)
        )

        await redis.stop()
        await redis.start()

        # The same token, unchanged, on HTTP and on the socket opened before.
        async with asyncio.timeout(RECOVERY_SECONDS):
            while True:
                try:
                    me = await as_user(server, alice, ME)
                    break
                except TransportQueryError as exc:
                    assert exc.errors and exc.errors[0]["extensions"]["code"] == "UNAVAILABLE", exc
                    await asyncio.sleep(0.5)  # the client's back-off
        assert me["me"]["id"] == alice.id
        sent = await send_once_back(server, alice, room_id, "after the restart")
        assert (await live.next())["messageAdded"]["seq"] == sent["seq"] == 1
