"""The real services (Redis, Kafka, FerretDB, versitygw), started through ``scripts/services.sh``.

The tests and the benchmark start them the same way, once per run; ``start`` is a
no-op for a service already running, and a service that cannot start fails loudly.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from devtools.processes import REPO

SERVICES_SCRIPT = REPO / "scripts" / "services.sh"
SERVICES_START_TIMEOUT_SECONDS = 1_500.0


@dataclass(frozen=True)
class RealServices:
    """URLs of the running real services (the tests start them through here too)."""

    mongo_url: str
    broker_url: str
    redis_url: str
    # The S3-compatible object storage (versitygw): s3://KEY:SECRET@host:port/bucket.
    storage_url: str

    def mongo_url_for(self, database: str) -> str:
        """The MongoDB URL of another database on the same server."""
        base = self.mongo_url.rsplit("/", 1)[0]
        return f"{base}/{database}"


def services_script(
    *args: str, timeout: float = 120.0, env: Mapping[str, str] | None = None
) -> str:
    """Runs ``scripts/services.sh ARGS`` (with ``env`` over this process's environment);
    raises with its output if it fails."""
    done = subprocess.run(
        ["bash", str(SERVICES_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, **env} if env else None,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/services.sh {' '.join(args)} failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
        )
    return done.stdout


def start_real_services() -> RealServices:
    """Installs (once) and starts Redis, Kafka, FerretDB and versitygw (a no-op for those
    already running); fails loudly if one cannot start."""
    services_script("start", timeout=SERVICES_START_TIMEOUT_SECONDS)
    urls: dict[str, str] = {}
    for line in services_script("env").splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        urls[name.strip()] = value.strip().strip("'\"")
    return RealServices(
        urls["PLOP_MONGO_URL"],
        urls["PLOP_BROKER_URL"],
        urls["PLOP_REDIS_URL"],
        urls["PLOP_STORAGE_URL"],
    )
