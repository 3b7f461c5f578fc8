"""Background loops end when the stop cancels them, even after a swallowed cancel,
and the stop does not wait on one that is stuck. No server: the loops themselves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from app.runtime import STOP_SECONDS, Background
from services.periodic import every


async def _swallowing_wait(calls: list[int], entered: asyncio.Event) -> None:
    """Waits and drops the cancel it gets, as Python 3.11's ``asyncio.wait_for`` does
    when the cancel lands just as the call it waits on finishes."""
    calls.append(1)
    entered.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


async def test_a_loop_whose_step_swallowed_the_cancel_still_ends() -> None:
    calls: list[int] = []
    entered = asyncio.Event()
    loop = asyncio.create_task(every(3600, lambda: _swallowing_wait(calls, entered), "step failed"))
    await entered.wait()
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        # Waiting out the hour-long pause would time out here.
        await asyncio.wait_for(loop, timeout=5)
    assert calls == [1]


async def test_a_failed_step_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []
    done = asyncio.Event()

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("backend hiccup")
        done.set()

    loop = asyncio.create_task(every(0, flaky, "flaky step failed"))
    try:
        await asyncio.wait_for(done.wait(), timeout=5)
    finally:
        loop.cancel()
    assert len(attempts) >= 2
    assert "flaky step failed" in caplog.text


async def test_the_stop_logs_a_stuck_task_where_it_waits_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entered = asyncio.Event()

    async def never_ends() -> None:
        while True:  # swallows every cancel: stuck for good
            try:
                entered.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                continue

    background = Background()
    background.run("stuck-worker", never_ends)
    await entered.wait()
    caplog.set_level(logging.ERROR)
    began = time.monotonic()
    await background.close()
    took = time.monotonic() - began
    assert took < STOP_SECONDS + 1
    record = next(
        r for r in caplog.records if r.getMessage() == "background task did not stop in time"
    )
    assert record.__dict__["task"] == "stuck-worker"
    assert "never_ends" in record.__dict__["waiting_at"]
