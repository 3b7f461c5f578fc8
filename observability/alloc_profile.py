"""What a server process's memory is made of, on request: for measuring, never in production.

With ``PLOP_TRACEMALLOC_DIR`` set, each SIGUSR1 writes into that directory, numbered
``N``:
``N.tracemalloc`` (a ``tracemalloc`` snapshot, read with ``Snapshot.load``) and
``N.json`` (live objects tracked by the garbage collector, by type, and the
asyncio tasks by where they wait). Allocations are traced from the first dump on:
two dumps around opening many sockets tell what each socket holds
(``bench.socket_profile``), and what came before (signing users up, say) runs at
full speed. Tracing slows every allocation, which is why it is off unless asked for.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import logging
import signal
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from observability.stacks import awaiting

logger = logging.getLogger(__name__)

# Frames kept per allocation: enough to reach from most libraries' allocations up to
# the Plop code that asked for them; each frame more slows every allocation.
TRACED_FRAMES = 20


def object_counts() -> dict[str, int]:
    """Objects the garbage collector tracks, by their type's module and name."""
    gc.collect()
    counts = Counter(
        f"{type(thing).__module__}.{type(thing).__qualname__}" for thing in gc.get_objects()
    )
    return dict(counts)


def task_counts() -> dict[str, int]:
    """The loop's tasks by where they wait (their chain of coroutines, outermost first)."""
    return dict(
        Counter(" -> ".join(reversed(awaiting(task.get_coro()))) for task in asyncio.all_tasks())
    )


def dump(directory: Path, number: int) -> None:
    """Writes dump ``number``: the allocation snapshot, then the counts (reading a
    task's coroutines makes their frame objects, which the snapshot must not see).
    The first dump starts the tracing."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(TRACED_FRAMES)
    tracemalloc.take_snapshot().dump(str(directory / f"{number}.tracemalloc"))
    counts = {"objects": object_counts(), "tasks": task_counts()}
    # Written last, and by a rename: a reader that sees the counts sees the snapshot.
    partial = directory / f"{number}.json.partial"
    partial.write_text(json.dumps(counts))
    partial.rename(directory / f"{number}.json")
    logger.info("allocation profile written", extra={"dump": number})


@contextmanager
def profiled(directory: Path | None) -> Iterator[None]:
    """Dumps on each SIGUSR1 until the block ends (with a directory; without one,
    nothing)."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    dumps = itertools.count(1)
    loop.add_signal_handler(signal.SIGUSR1, lambda: dump(directory, next(dumps)))
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
        tracemalloc.stop()
