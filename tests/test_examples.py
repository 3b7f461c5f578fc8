"""The README's Python example runs on its own against a real server, as a reader runs it."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[1]
CHAT_EXAMPLE = REPO / "examples" / "chat.py"
RUN_TIMEOUT_SECONDS = 60.0


async def run_example(path: Path, *args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT_SECONDS):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_the_readme_points_at_the_example() -> None:
    readme = (REPO / "README.md").read_text()
    assert "examples/chat.py" in readme


async def test_chat_example_signs_up_two_users_and_delivers_a_message_live(
    any_server: ServerProcess, tmp_path: Path
) -> None:
    # From another directory: the example needs the installed package, not the cwd.
    code, out, err = await run_example(CHAT_EXAMPLE, any_server.http_url, cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"Alice opened room \S+ with bob_\w+ \(user id \S+\)", lines[0]), out
    assert lines[1] == "Alice sent seq 1", out
    assert re.fullmatch(r"Bob received seq 1 from alice_\w+: Hello, Bob!", lines[2]), out
    assert len(lines) == 3, out
