"""The servers under test, each a process of its own on loopback (``devtools``).

``plop_server`` starts ``plop serve`` as users run it, configured by environment
only: the embedded default (no ``PLOP_*`` URLs) or the real services started by
``scripts/services.sh``, with a database and topic prefix of the run's own.
``baseline_server`` starts the raw FastAPI app of ``bench.baseline`` under uvicorn.
``ServerGroup`` is several Plop instances on the same services, measured as one server
(the scaling rows): their CPU, memory and logs add up.
"""

from __future__ import annotations

import asyncio
import sys

from devtools.processes import (
    HOST,
    LOAD_TEST_LIMITS,
    REPO,
    ServerProcess,
    free_port,
    plain_env,
    plop_argv,
    raise_open_files,
)
from devtools.services import start_real_services

LOG_DIR = REPO / ".services" / "bench-logs"

__all__ = [
    "HOST",
    "REPO",
    "ServerGroup",
    "ServerProcess",
    "baseline_server",
    "plop_server",
    "raise_open_files",
]


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


class ServerGroup:
    """Instances of one server on ports of their own, read as one: what a scenario
    asks of a ``ServerProcess`` (CPU, RSS, log lines) is the sum over the instances;
    ``port`` is the first instance's (where set-up and sends go)."""

    def __init__(self, instances: list[ServerProcess]) -> None:
        if not instances:
            raise ValueError("a server group needs an instance")
        self.instances = instances

    @property
    def port(self) -> int:
        return self.instances[0].port

    @property
    def ports(self) -> list[int]:
        return [instance.port for instance in self.instances]

    @property
    def base_url(self) -> str:
        return self.instances[0].base_url

    @property
    def base_urls(self) -> list[str]:
        return [instance.base_url for instance in self.instances]

    async def start(self) -> None:
        await asyncio.gather(*(instance.start() for instance in self.instances))

    async def stop(self) -> None:
        await asyncio.gather(*(instance.stop() for instance in self.instances))

    def rss_bytes(self) -> int:
        return sum(instance.rss_bytes() for instance in self.instances)

    def cpu_seconds(self) -> float:
        return sum(instance.cpu_seconds() for instance in self.instances)

    def log_count(self, needle: str) -> int:
        return sum(instance.log_count(needle) for instance in self.instances)


def plop_server(
    name: str, backend: str, run_id: str, settings: dict[str, str], instances: int = 1
) -> ServerGroup:
    """``plop serve`` on free ports, on ``backend``, with extra PLOP_* settings;
    ``instances`` processes of it share the backend (the real services only)."""
    if instances > 1 and backend != "real":
        raise ValueError("several instances share the real services only")
    env = {**plain_env(), **LOAD_TEST_LIMITS, **backend_env(backend, run_id), **settings}
    servers = []
    for number in range(instances):
        port = free_port()
        instance_env = {**env, "PLOP_INSTANCE_ID": f"{name}-{number}"}
        servers.append(
            ServerProcess(f"{name}-{number}", plop_argv(port), instance_env, port, LOG_DIR)
        )
    return ServerGroup(servers)


def baseline_server(name: str) -> ServerGroup:
    """The raw FastAPI broadcast app of ``bench.baseline`` under uvicorn."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--host", HOST, "--port", str(port)]
    return ServerGroup([ServerProcess(name, argv, plain_env(), port, LOG_DIR)])
