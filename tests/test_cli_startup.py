"""The client commands of ``plop`` (send, tail, login, ...) start without the server's
stack: uvicorn, the settings and strawberry are loaded by ``plop serve`` alone. Each
command is a process of its own, so what it imports is paid at every run (the suite
runs hundreds of them)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.services import REPO

# Modules only the server needs; importing any of them costs a client command a
# quarter of a second of CPU or more.
SERVER_ONLY = ("uvicorn", "strawberry", "pydantic_settings", "settings", "fastapi", "main")


def test_the_plop_command_group_loads_none_of_the_server_s_modules() -> None:
    probe = (
        "import json, sys\n"
        "import cli.commands\n"
        f"print(json.dumps(sorted(m for m in {SERVER_ONLY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == []
