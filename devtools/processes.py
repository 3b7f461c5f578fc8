"""Server processes on loopback, as the tests and the benchmark start them.

``ServerProcess`` runs one program (``plop serve`` or the benchmark's raw baseline)
on a port of its own, with its output in a log file, a raised open-files limit, and
its RSS and CPU time through psutil; ``wait_until_ready`` waits for its /healthz.
``plop_argv`` is how users start Plop. One implementation for tests/ and bench/.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
# Enough descriptors for tens of thousands of sockets in one process.
WANTED_OPEN_FILES = 200_000
_PR_SET_PDEATHSIG = 1
# Abuse limits far above what a load (or a test suite) sends from one address and a
# few users; the limits themselves stay on, only their budgets grow.
LOAD_TEST_LIMITS = {
    "PLOP_SEND_MESSAGE_LIMIT": "1000000",
    "PLOP_CREATE_ROOM_LIMIT": "1000000",
    "PLOP_INVITE_MEMBERS_LIMIT": "1000000",
    "PLOP_SEND_FRIEND_REQUEST_LIMIT": "1000000",
    "PLOP_FRIEND_REQUEST_COOLDOWN_SECONDS": "0.001",
    "PLOP_FAILED_LOG_IN_PER_USERNAME_LIMIT": "1000000",
    "PLOP_FAILED_LOG_IN_PER_ADDRESS_LIMIT": "1000000",
    "PLOP_SIGN_UP_PER_ADDRESS_LIMIT": "1000000",
    "PLOP_LOG_IN_PER_USERNAME_LIMIT": "1000000",
    "PLOP_LOG_IN_PER_ADDRESS_LIMIT": "1000000",
    "PLOP_EDIT_MESSAGE_LIMIT": "1000000",
    "PLOP_DELETE_MESSAGE_LIMIT": "1000000",
    "PLOP_MARK_READ_LIMIT": "1000000",
    "PLOP_SEARCH_USERS_LIMIT": "1000000",
    "PLOP_SEARCH_MESSAGES_LIMIT": "1000000",
    "PLOP_REGISTER_PUSH_DEVICE_LIMIT": "1000000",
    "PLOP_LEAVE_ROOM_LIMIT": "1000000",
    "PLOP_BLOCK_USER_LIMIT": "1000000",
    "PLOP_CHANGE_PASSWORD_LIMIT": "1000000",
    "PLOP_END_SESSION_LIMIT": "1000000",
    "PLOP_DELETE_ACCOUNT_LIMIT": "1000000",
    "PLOP_ROOM_INVITATION_LIMIT": "1000000",
    "PLOP_MUTE_ROOM_LIMIT": "1000000",
    "PLOP_PERSIST_QUERY_LIMIT": "1000000",
    "PLOP_MAX_SESSIONS_PER_USER": "1000000",
    "PLOP_PASSWORD_HASH_QUEUE": "100000",
    "PLOP_MAX_SOCKETS_PER_USER": "1000000",
    "PLOP_MAX_SOCKETS_PER_ADDRESS": "1000000",
}


def raise_open_files(wanted: int = WANTED_OPEN_FILES) -> int:
    """Raises this process's RLIMIT_NOFILE as far as allowed; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        attempts = [(wanted, hard)]
    else:
        attempts = [(wanted, max(wanted, hard)), (min(wanted, hard), hard)]
    for new_soft, new_hard in attempts:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
        except (ValueError, OSError):
            continue
        return new_soft
    return soft


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _start_child() -> None:
    """In the child: more open files, and killed when its parent dies, so that no
    server outlives the run that started it."""
    raise_open_files()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ServerProcess:
    """One server process on a port of its own, with its log in ``log_dir``."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path
    ) -> None:
        self.name = name
        self.port = port
        self._argv = argv
        self._env = env
        self._process: asyncio.subprocess.Process | None = None
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Starts the process and waits for /healthz; fails with the log's tail otherwise."""
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv,
                env=self._env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                cwd=REPO,
                preexec_fn=_start_child,
            )
        await wait_until_ready(self.name, self.base_url, lambda: self.running, self.log_tail)

    async def stop(self) -> None:
        """SIGTERM (a graceful stop, as an operator would), then SIGKILL if it does
        not end in time."""
        if self._process is None or not self.running:
            return
        self._process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await self._process.wait()
        except TimeoutError:
            await self.kill()

    def terminate(self) -> None:
        """Sends SIGTERM and returns at once; ``exited`` waits for the end."""
        if self._process is not None and self.running:
            self._process.terminate()

    async def exited(self, within: float) -> int:
        """The process's exit status, once it ends (TimeoutError if not within)."""
        assert self._process is not None, "not started"
        async with asyncio.timeout(within):
            return await self._process.wait()

    async def kill(self) -> None:
        """``kill -9``: the process dies without closing anything."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGKILL)
            await self._process.wait()

    def _processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def rss_bytes(self) -> int:
        """Resident memory of the server, its children included."""
        total = 0
        for process in self._processes():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far, its children included."""
        total = 0.0
        for process in self._processes():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def log_size(self) -> int:
        """Where the log ends now; ``log_since`` reads what came after."""
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_count(self, needle: str) -> int:
        """How many lines of the server's log contain ``needle``."""
        if not self.log_path.exists():
            return 0
        with self.log_path.open(errors="replace") as log:
            return sum(1 for line in log if needle in line)


def plain_env() -> dict[str, str]:
    """This environment without any PLOP_* setting: a server gets only the run's own."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PLOP_")}


def plop_argv(port: int, host: str = HOST) -> list[str]:
    """``plop serve`` on the port, as users run it."""
    script = Path(sys.executable).parent / "plop"
    if script.exists():
        command = [str(script)]
    else:
        command = [sys.executable, "-c", "from cli.commands import main; main()"]
    return [*command, "serve", "--host", host, "--port", str(port)]


async def wait_until_ready(
    name: str, base_url: str, running: Callable[[], bool], log_tail: Callable[[], str]
) -> None:
    """Waits for a server process's /healthz; fails with its log's tail if it exits or
    is not ready in time."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                while True:
                    if not running():
                        raise RuntimeError(f"{name} exited:\n{log_tail()}")
                    try:
                        if (await client.get(f"{base_url}/healthz")).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    # Another process: there is no event to await for its readiness.
                    await asyncio.sleep(0.2)
        except TimeoutError as exc:
            raise RuntimeError(f"{name} not ready:\n{log_tail()}") from exc
