"""A real Plop server process (``plop serve``), as users run it (``devtools.processes``)."""

from __future__ import annotations

import sys
from pathlib import Path

from devtools.processes import REPO, plain_env, plop_argv
from devtools.processes import ServerProcess as _Process
from devtools.processes import free_port as free_port

LOG_DIR = REPO / ".services" / "test-logs"
# The suite signs up about a thousand users: at argon2's default cost (64 MiB, three
# passes) that alone is minutes of CPU. Test servers hash at the cheapest cost the
# settings allow; tests/test_password_cost.py checks the default cost on its own.
CHEAP_PASSWORD_HASHING = {
    "PLOP_PASSWORD_HASH_TIME_COST": "1",
    "PLOP_PASSWORD_HASH_MEMORY_KIB": "8192",
}
PLOP = Path(sys.executable).parent / "plop"


class ServerProcess(_Process):
    """One ``plop serve`` on a port of its own; can be stopped, killed and restarted.

    The server sees only the settings given here, never the test run's PLOP_*.
    """

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        port = port or free_port()
        self.args = args  # more options of `plop serve`
        argv = [*plop_argv(port), *args]
        super().__init__(
            name, argv, {**plain_env(), **CHEAP_PASSWORD_HASHING, **env}, port, LOG_DIR
        )

    async def start(self) -> None:
        """Starts the server; one that fails to become ready is killed at once, so that
        it does not go on loading the machine for the rest of the run (a fixture whose
        setup failed never reaches its teardown)."""
        try:
            await super().start()
        except BaseException:
            await self.kill()
            raise

    @property
    def http_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"
