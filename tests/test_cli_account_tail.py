"""``plop tail --all``: every room of the account in one terminal, and ``--since``
carrying on from the token that Ctrl+C printed."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis

from client import Credentials, save_credentials
from live.account_cursor import Cursor
from services.sync_tokens import SyncTokens
from settings import Settings
from tests.support.chat import group_room, send
from tests.support.clients import (
    EVENT_TIMEOUT_SECONDS,
    Account,
    active_subscriptions,
    sign_up,
    wait_active_subscriptions,
)
from tests.support.server import ServerProcess
from tests.test_cli import PLOP, Tail, plop, plop_env
from tests.test_client import settled

RETENTION_SECONDS = Settings().sync_retention_seconds
RESUME_HINT = re.compile(r"^To carry on from here: plop tail --all --since (\S+)$")


@asynccontextmanager
async def tailing_all(
    server: ServerProcess, config: Path, *args: str
) -> AsyncIterator[tuple[Tail, asyncio.subprocess.Process]]:
    """``plop tail --all``, subscribed on the server when the block starts (from now,
    it misses what is sent before)."""
    before = await active_subscriptions(server)
    process = await asyncio.create_subprocess_exec(
        str(PLOP),
        "tail",
        "--all",
        *args,
        env=plop_env(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    tail = Tail(process)
    try:
        await wait_active_subscriptions(server, before + 1)
        yield tail, process
    finally:
        await tail.stop()


async def shown(tail: Tail, count: int) -> list[str]:
    """The next ``count`` lines, leaving out member lists (a room's creation may or may
    not give one, depending on when its event is consumed)."""
    lines: list[str] = []
    async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
        while len(lines) < count:
            line = await tail.line()
            if "\tmembers: " not in line:
                lines.append(line)
    return lines


def logged_in(config: Path, server: ServerProcess, account: Account) -> None:
    save_credentials(
        config, Credentials(server.http_url, account.token, account.username, account.id)
    )


async def test_tail_all_prints_every_room_and_carries_on_from_its_token(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    server = embedded_server
    viewer, alice, carol = [await sign_up(server, p) for p in ("v", "alice", "carol")]
    logged_in(tmp_path, server, viewer)
    async with settled(server), tailing_all(server, tmp_path) as (tail, process):
        assert await tail.notice() == f"Following every room of {viewer.username} from now."
        one = await group_room(server, alice, [viewer], "one")
        await send(server, alice, one, "hi\tthere")
        two = await group_room(server, carol, [viewer], "two")
        await send(server, carol, two, "hello")
        await send(server, alice, one, "again")
        live = await shown(tail, 5)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(EVENT_TIMEOUT_SECONDS):
            hint = await tail.notice()
            await process.wait()
    assert live == [
        f"{one}\tjoined one",
        f"{one}\t1\t{alice.username}\thi\\tthere",
        f"{two}\tjoined two",
        f"{two}\t1\t{carol.username}\thello",
        f"{one}\t2\t{alice.username}\tagain",
    ]
    resume = RESUME_HINT.match(hint)
    assert resume is not None, hint

    # Sent while nobody follows: the token carries on from the last line printed.
    await send(server, carol, two, "while away")
    await send(server, alice, one, "also while away")
    async with settled(server), tailing_all(server, tmp_path, "--since", resume[1]) as (tail, _):
        assert await tail.notice() == (
            f"Following every room of {viewer.username} after the given token."
        )
        missed = await shown(tail, 2)
        await send(server, alice, one, "live again")
        missed += await shown(tail, 1)
    assert missed == [
        f"{two}\t2\t{carol.username}\twhile away",
        f"{one}\t3\t{alice.username}\talso while away",
        f"{one}\t4\t{alice.username}\tlive again",
    ]


async def test_tail_takes_a_room_or_all_never_both(
    embedded_server: ServerProcess, tmp_path: Path
) -> None:
    logged_in(tmp_path, embedded_server, await sign_up(embedded_server, "v"))
    for args in (
        (),
        ("room", "--all"),
        ("room", "--since", "token"),
        ("--all", "--after-seq", "0"),
    ):
        ran = await plop(tmp_path, "tail", *args)
        assert ran.code == 2, (args, ran.stderr)
        assert "--all" in ran.stderr or "--since" in ran.stderr, ran.stderr
    garbage = await plop(tmp_path, "tail", "--all", "--since", "nonsense")
    assert garbage.code == 1 and "BAD_USER_INPUT" in garbage.stderr, garbage.stderr


async def test_tail_all_since_an_expired_token_says_to_start_over(
    server_a: ServerProcess, real_env: dict[str, str], tmp_path: Path
) -> None:
    viewer = await sign_up(server_a, "v")
    logged_in(tmp_path, server_a, viewer)
    redis = Redis.from_url(real_env["PLOP_REDIS_URL"], decode_responses=True)
    try:
        tokens = SyncTokens(redis, retention_seconds=24 * 3_600)
        expired = await tokens.encode(
            viewer.id, Cursor(upto=1, at=time.time() - RETENTION_SECONDS - 60)
        )
    finally:
        await redis.aclose()
    ran = await plop(tmp_path, "tail", "--all", "--since", expired)
    assert ran.code == 1, ran.stderr
    assert "run `plop tail --all` without --since" in ran.stderr, ran.stderr
