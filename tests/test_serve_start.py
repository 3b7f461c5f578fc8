"""``plop serve`` starts and stops as an operator expects: a port in use fails at
once with one clear line, and SIGTERM during start-up ends the process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from tests.support.server import free_port

PLOP = str(Path(sys.executable).with_name("plop"))


def embedded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PLOP_")}


async def test_a_port_in_use_fails_at_once_with_a_clear_message() -> None:
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
            env=embedded_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(5):
            output, _ = await process.communicate()
    assert process.returncode not in (0, None)
    lines = output.decode().strip().splitlines()
    assert lines[-1] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert "Traceback" not in output.decode()


async def test_sigterm_during_start_up_ends_the_process() -> None:
    process = await asyncio.create_subprocess_exec(
        PLOP,
        "serve",
        "--port",
        str(free_port()),
        env=embedded_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    # The lifespan has begun opening the backends when it says which are embedded.
    async with asyncio.timeout(60):
        while b"EMBEDDED MODE" not in await process.stdout.readline():
            pass
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        await process.communicate()
    assert process.returncode is not None
