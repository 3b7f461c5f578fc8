"""Work that repeats until the process stops: sweeps, flushes, heartbeats.

Every such loop pauses through ``pause``, which first honours a cancel the loop's
task already received. Python 3.11's ``asyncio.wait_for`` (used inside the Redis
and Kafka clients) drops a cancel that lands just as the awaited call finishes, so
a loop that only waited on ``asyncio.sleep`` would carry on after the stop had
cancelled it, and the stop would wait on it until its watchdog ended the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

logger = logging.getLogger(__name__)


async def pause(seconds: float) -> None:
    """Sleeps ``seconds``, unless the current task was cancelled: then raises at once."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)


async def every(
    seconds: float,
    step: Callable[[], Awaitable[Any]],
    failure: str,
    *,
    pause_first: bool = False,
) -> NoReturn:
    """Runs ``step`` every ``seconds`` until cancelled; a failed step is logged as
    ``failure`` and tried again at the next turn."""
    if pause_first:
        await pause(seconds)
    while True:
        try:
            await step()
        except Exception:
            logger.exception(failure)
        await pause(seconds)
