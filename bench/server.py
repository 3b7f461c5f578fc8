"""The servers under test, each a process of its own on loopback (``devtools``).

``plop_server`` starts ``plop serve`` as users run it, configured by environment
only: the embedded default (no ``PLOP_*`` URLs) or the real services started by
``scripts/services.sh``, with a database and topic prefix of the run's own.
``baseline_server`` starts the raw FastAPI app of ``bench.baseline`` under uvicorn.
"""

from __future__ import annotations

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

__all__ = ["HOST", "REPO", "ServerProcess", "baseline_server", "plop_server", "raise_open_files"]


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
    env = {**plain_env(), **LOAD_TEST_LIMITS, **backend_env(backend, run_id), **settings}
    return ServerProcess(name, plop_argv(port), env, port, LOG_DIR)


def baseline_server(name: str) -> ServerProcess:
    """The raw FastAPI broadcast app of ``bench.baseline`` under uvicorn."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--host", HOST, "--port", str(port)]
    return ServerProcess(name, argv, plain_env(), port, LOG_DIR)
