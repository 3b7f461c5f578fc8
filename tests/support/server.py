"""A real Plop server process (``plop serve``), as users run it."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import sys
from pathlib import Path

from bench.server import wait_until_ready
from tests.support.services import REPO

LOG_DIR = REPO / ".services" / "test-logs"
STOP_TIMEOUT_SECONDS = 15.0
PLOP = Path(sys.executable).parent / "plop"


def _die_with_parent() -> None:
    """In the child: be killed when the test process dies, so no server outlives a run."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """One ``plop serve`` process on a port of its own; can be killed and restarted."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.args = args  # more options of `plop serve`
        # The server sees only the settings given here, never the test run's PLOP_*.
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PLOP_")}
        self._env.update(env)
        self._process: asyncio.subprocess.Process | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Starts the process and waits until it answers; fails with its log otherwise."""
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                str(PLOP),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
                env=self._env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=REPO,
                preexec_fn=_die_with_parent,
            )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        await wait_until_ready(self.name, self.base_url, lambda: self.running, self.log_tail)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def kill(self) -> None:
        """``kill -9``: the instance dies without closing anything."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGKILL)
            await self._process.wait()

    async def stop(self) -> None:
        """A graceful stop (SIGTERM), as an operator would."""
        if self._process is None or not self.running:
            return
        self._process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await self._process.wait()
        except TimeoutError:
            await self.kill()
