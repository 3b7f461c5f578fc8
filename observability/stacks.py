"""Where a process's event loop and its tasks wait: the one line a stuck stop leaves.

Read from another thread (the stop's watchdog) while the loop may still run, so a
task may finish as it is read; good enough for a last log line.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback

# How deep one stack is followed.
MAX_DUMP_FRAMES = 12


def still_running(loop: asyncio.AbstractEventLoop) -> str:
    """Where the loop's thread and each unfinished task wait, a line each."""
    lines: list[str] = []
    loop_thread = threading.main_thread().ident
    frame = sys._current_frames().get(loop_thread or 0)
    if frame is not None:
        lines.append("loop thread: " + " <- ".join(_frames(traceback.extract_stack(frame))))
    try:
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:  # the set changed while it was read
        tasks = []
    for task in tasks:
        lines.append(f"task {task.get_name()}: " + " <- ".join(awaiting(task.get_coro())))
    return "\n".join(lines)


def awaiting(awaited: object) -> list[str]:
    """Where a task waits: its coroutine and every coroutine it awaits, innermost first
    (ending with the future it waits on, if it is not a coroutine)."""
    places: list[str] = []
    while awaited is not None and len(places) < MAX_DUMP_FRAMES:
        frame = next(
            (
                found
                for name in ("cr_frame", "ag_frame", "gi_frame")
                if (found := getattr(awaited, name, None)) is not None
            ),
            None,
        )
        if frame is None:
            places.append(type(awaited).__name__)
            break
        places.append(_place(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        awaited = next(
            (
                found
                for name in ("cr_await", "ag_await", "gi_yieldfrom")
                if (found := getattr(awaited, name, None)) is not None
            ),
            None,
        )
    return places[::-1]


def _frames(stack: traceback.StackSummary) -> list[str]:
    return [_place(frame.filename, frame.lineno, frame.name) for frame in reversed(stack)][:8]


def _place(filename: str, line: int | None, function: str) -> str:
    return f"{filename.rsplit('/', 2)[-1]}:{line} {function}"
