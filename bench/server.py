"""The servers under test, each a process of its own on loopback.

``plop_server`` starts ``plop serve`` as users run it, configured by environment
only: the embedded default (no ``PLOP_*`` URLs) or the real services started by
``scripts/services.sh``, with a database and topic prefix of the run's own.
``baseline_server`` starts the raw FastAPI app of ``bench.baseline`` under uvicorn.
Both get a raised open-files limit, and report their RSS and CPU time through psutil.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
SERVICES_SCRIPT = REPO / "scripts" / "services.sh"
LOG_DIR = REPO / ".services" / "bench-logs"
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
SERVICES_START_TIMEOUT_SECONDS = 1_500.0
# Enough descriptors for tens of thousands of sockets in one process.
WANTED_OPEN_FILES = 200_000
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


class ServerProcess:
    """One server process on a port of its own, with its log in ``.services/bench-logs``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self._argv = argv
        self._env = env
        self._process: asyncio.subprocess.Process | None = None
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"

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
                preexec_fn=raise_open_files,
            )
        await wait_until_ready(self.name, self.base_url, lambda: self.running, self.log_tail)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end in time."""
        if self._process is None or not self.running:
            return
        self._process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await self._process.wait()
        except TimeoutError:
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

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_count(self, needle: str) -> int:
        """How many lines of the server's log contain ``needle``."""
        if not self.log_path.exists():
            return 0
        with self.log_path.open(errors="replace") as log:
            return sum(1 for line in log if needle in line)


def _plain_env() -> dict[str, str]:
    """This environment without any PLOP_* setting: the server gets only the run's own."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PLOP_")}


def _plop_argv(port: int) -> list[str]:
    script = Path(sys.executable).parent / "plop"
    if script.exists():
        command = [str(script)]
    else:
        command = [sys.executable, "-c", "from cli.main import main; main()"]
    return [*command, "serve", "--host", HOST, "--port", str(port)]


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


@dataclass(frozen=True)
class RealServices:
    """URLs of the running real services (the tests start them through here too)."""

    mongo_url: str
    broker_url: str
    redis_url: str

    def mongo_url_for(self, database: str) -> str:
        """The MongoDB URL of another database on the same server."""
        base = self.mongo_url.rsplit("/", 1)[0]
        return f"{base}/{database}"


def services_script(*args: str, timeout: float = 120.0) -> str:
    """Runs ``scripts/services.sh ARGS``; raises with its output if it fails."""
    done = subprocess.run(
        ["bash", str(SERVICES_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/services.sh {' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
        )
    return done.stdout


def start_real_services() -> RealServices:
    """Installs (once) and starts Redis, Kafka and FerretDB (a no-op for those already
    running); fails loudly if one cannot start."""
    services_script("start", timeout=SERVICES_START_TIMEOUT_SECONDS)
    urls: dict[str, str] = {}
    for line in services_script("env").splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        urls[name.strip()] = value.strip().strip("'\"")
    return RealServices(urls["PLOP_MONGO_URL"], urls["PLOP_BROKER_URL"], urls["PLOP_REDIS_URL"])


def backend_env(backend: str, run_id: str) -> dict[str, str]:
    """The PLOP_* URLs of a backend: none for embedded, the run's own names for real."""
    if backend == "embedded":
        return {}
    if backend != "real":
        raise ValueError(f"unknown backend {backend!r}")
    services = start_real_services()
    return {
        "PLOP_MONGO_URL": services.mongo_url_for(f"bench_{run_id}"),
        "PLOP_BROKER_URL": services.broker_url,
        "PLOP_REDIS_URL": services.redis_url,
        "PLOP_TOPIC_PREFIX": f"bench-{run_id}",
    }


def plop_server(name: str, backend: str, run_id: str, settings: dict[str, str]) -> ServerProcess:
    """``plop serve`` on a free port, on ``backend``, with extra PLOP_* settings."""
    port = free_port()
    env = {**_plain_env(), **LOAD_TEST_LIMITS, **backend_env(backend, run_id), **settings}
    return ServerProcess(name, _plop_argv(port), env, port)


def baseline_server(name: str) -> ServerProcess:
    """The raw FastAPI broadcast app of ``bench.baseline`` under uvicorn."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--host", HOST, "--port", str(port)]
    return ServerProcess(name, argv, _plain_env(), port)
