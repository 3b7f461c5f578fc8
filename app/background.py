"""The process's background work: named tasks in one ``asyncio.TaskGroup``.

Services expose one pass of their periodic work (a sweep, a relay pass, a check);
``Background.every`` repeats a pass at its interval, and ``Background.start`` runs a
long-lived worker that says when it is ready (the push worker joining its group).
No task may end the group: a pass that raises is logged under its name and runs
again at its next turn; a worker that fails is logged and ends alone.

Every wait between passes goes through ``pause``, which first honours a cancel the
task already received: Python 3.11's ``asyncio.wait_for`` (inside the Redis and Kafka
clients) drops a cancel that lands just as the call it waits on finishes, and a
loop that only slept would then carry on after the stop had cancelled it.

Leaving ``open_background`` cancels the group and waits for it, bounded: a backend
call that refuses to give way must not keep the process from stopping, so a task
still running after ``stop_seconds`` is logged with where it waits and left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from observability.stacks import awaiting

logger = logging.getLogger(__name__)

OutcomeT = TypeVar("OutcomeT")

# How long to wait after a pass: a fixed interval, or one chosen from the pass's
# outcome (None when the pass failed).
Wait = float | Callable[[OutcomeT | None], float]


class Background:
    """Adds named tasks to the process's one task group."""

    def __init__(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self._running: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> list[str]:
        """The names of the tasks still running."""
        return sorted(task.get_name() for task in self._running)

    @property
    def still_running(self) -> list[asyncio.Task[None]]:
        """The tasks still running."""
        return list(self._running)

    def every(
        self,
        name: str,
        one_pass: Callable[[], Awaitable[OutcomeT]],
        wait: Wait[OutcomeT],
        *,
        first_after: float = 0.0,
    ) -> None:
        """Runs ``one_pass`` until the group stops, waiting ``wait`` after each pass
        (and ``first_after`` before the first)."""
        self._spawn(name, _repeat(name, one_pass, wait, first_after))

    def once(self, name: str, work: Callable[[], Awaitable[object]]) -> None:
        """Runs ``work`` once in the group (work a start leaves for later, such as a
        backfill); its failure is logged under its name, the process goes on."""
        self._spawn(name, _run_once(name, work))

    async def start(
        self, name: str, work: Callable[[asyncio.Future[None]], Awaitable[None]]
    ) -> None:
        """Runs ``work`` in the group and returns once it has set its ready future;
        raises what made it fail before that."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = self._spawn(name, _run_worker(name, work, ready))
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            raise RuntimeError(f"{name} ended before it was ready")
        ready.result()

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._group.create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task


async def _repeat(
    name: str,
    one_pass: Callable[[], Awaitable[OutcomeT]],
    wait: Wait[OutcomeT],
    first_after: float,
) -> None:
    if first_after:
        await pause(first_after)
    while True:
        outcome: OutcomeT | None
        try:
            outcome = await one_pass()
        except Exception:
            logger.exception("background pass failed", extra={"task": name})
            outcome = None
        await pause(wait(outcome) if callable(wait) else wait)


async def pause(seconds: float) -> None:
    """Sleeps ``seconds``, unless the current task was cancelled: then raises at once."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)


async def _run_once(name: str, work: Callable[[], Awaitable[object]]) -> None:
    try:
        await work()
    except Exception:
        logger.exception("background task failed", extra={"task": name})


async def _run_worker(
    name: str, work: Callable[[asyncio.Future[None]], Awaitable[None]], ready: asyncio.Future[None]
) -> None:
    try:
        await work(ready)
    except Exception as exc:
        if not ready.done():
            ready.set_exception(exc)  # raised by ``start``, so the process does not start
        else:
            logger.exception("background task failed", extra={"task": name})


@asynccontextmanager
async def open_background(stop_seconds: float) -> AsyncIterator[Background]:
    """The process's task group, held by a task of its own so that leaving the block
    can cancel it (a task group is cancelled only through the task that holds it)."""
    opened: asyncio.Future[Background] = asyncio.get_running_loop().create_future()
    holder = asyncio.create_task(_hold_group(opened), name="background")
    background = await opened
    try:
        yield background
    finally:
        holder.cancel()
        await asyncio.wait({holder}, timeout=stop_seconds)
        for task in background.still_running:
            logger.error(
                "background task did not stop in time",
                extra={
                    "task": task.get_name(),
                    "waiting_at": " <- ".join(awaiting(task.get_coro())),
                },
            )


async def _hold_group(opened: asyncio.Future[Background]) -> None:
    async with asyncio.TaskGroup() as group:
        opened.set_result(Background(group))
        await asyncio.get_running_loop().create_future()  # until cancelled
