"""Where an idle subscribed socket's bytes go: an allocation profile of one server.

``python -m bench.socket_profile --sockets 2000`` starts ``plop serve`` (embedded) with
``PLOP_TRACEMALLOC_DIR`` (``observability.alloc_profile``), signs users up, sends each
room its first message, takes a dump, opens the sockets as ``plop bench memory``
does (one messageAdded subscription each, graphql-transport-ws, from load
processes), waits until the server streams them all, and takes a second dump. The
difference divided by the sockets is what one socket holds:

- bytes by allocation site (tracemalloc, grouped by traceback), each shown by its
  innermost frame and the nearest frame of Plop's own code above it;
- bytes by the package that allocated them (the innermost frame outside the
  standard library; the standard library's module when there is none);
- live objects the garbage collector tracks, by type, and asyncio tasks by where
  they wait.

Tracing slows the server several times: the profile says where bytes go, RSS per
socket comes from ``plop bench memory``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sysconfig
import tempfile
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import Sender, plop_settings, running
from bench.load import LoadPool, Plan
from bench.server import REPO, plop_server
from bench.targets import Target

DUMP_TIMEOUT_SECONDS = 600.0
SUBSCRIBE_TIMEOUT_SECONDS = 600.0
# Handshakes at once: a traced server is several times slower, and a handshake that
# times out is tried again, which loads it further.
CONNECT_CONCURRENCY = 4
OPEN_ATTEMPTS = 5
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
SITE_PACKAGES = "site-packages"
ROOT = REPO.resolve()


@dataclass(frozen=True)
class Dump:
    snapshot: tracemalloc.Snapshot
    objects: Counter[str]
    tasks: Counter[str]


async def _dump(target: Target, directory: Path, number: int) -> Dump:
    """Asks the server for dump ``number`` and waits until it is written."""
    (instance,) = target.server.instances
    done = directory / f"{number}.json"
    os.kill(instance.pid, signal.SIGUSR1)
    async with asyncio.timeout(DUMP_TIMEOUT_SECONDS):
        # Another process's file: there is no event to await across processes.
        while not done.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    counts = json.loads(done.read_text())
    snapshot = tracemalloc.Snapshot.load(str(directory / f"{number}.tracemalloc"))
    return Dump(snapshot, Counter(counts["objects"]), Counter(counts["tasks"]))


async def _wait_subscriptions(target: Target, count: int) -> tuple[int, bool]:
    """``Target.wait_subscriptions``, patient with a server that tracing slows down
    past the time one read of its metrics may take."""
    async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
        while True:
            try:
                return await target.wait_subscriptions(count, SUBSCRIBE_TIMEOUT_SECONDS)
            except httpx.TimeoutException:
                continue


def _package(filename: str) -> str | None:
    """Who a frame's file belongs to: ``plop/<dir>``, a site package, or None for the
    standard library (and frozen modules)."""
    path = Path(filename)
    if SITE_PACKAGES in path.parts:
        return path.parts[path.parts.index(SITE_PACKAGES) + 1].removesuffix(".py")
    if path.is_absolute() and path.resolve().is_relative_to(ROOT):
        relative = path.resolve().relative_to(ROOT)
        return f"plop/{relative.parts[0].removesuffix('.py')}"
    return None


def _stdlib_module(filename: str) -> str:
    path = Path(filename)
    if path.is_absolute() and path.resolve().is_relative_to(STDLIB):
        return "stdlib/" + path.resolve().relative_to(STDLIB).parts[0].removesuffix(".py")
    return f"stdlib/{path.name}"


def _short(frame: tracemalloc.Frame) -> str:
    path = Path(frame.filename)
    if SITE_PACKAGES in path.parts:
        path = Path(*path.parts[path.parts.index(SITE_PACKAGES) + 1 :])
    elif path.is_absolute() and path.resolve().is_relative_to(ROOT):
        path = path.resolve().relative_to(ROOT)
    elif path.is_absolute() and path.resolve().is_relative_to(STDLIB):
        path = path.resolve().relative_to(STDLIB)
    return f"{path}:{frame.lineno}"


def owner(traceback: tracemalloc.Traceback) -> str:
    """The package of the innermost frame outside the standard library."""
    for frame in reversed(traceback):  # innermost last
        if (package := _package(frame.filename)) is not None:
            return package
    return _stdlib_module(traceback[-1].filename)


def site(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame, and the nearest frames of Plop and of a library above it."""
    frames = list(reversed(traceback))
    shown = [_short(frames[0])]
    library = next(
        (f for f in frames if (p := _package(f.filename)) and not p.startswith("plop/")), None
    )
    plop = next((f for f in frames if (p := _package(f.filename)) and p.startswith("plop/")), None)
    for frame in (library, plop):
        if frame is not None and _short(frame) not in shown:
            shown.append(_short(frame))
    return " <- ".join(shown)


def analyse(before: Dump, after: Dump, sockets: int, top: int) -> dict[str, Any]:
    """What each socket holds: bytes by site and by package, objects, tasks."""
    stats = after.snapshot.compare_to(before.snapshot, "traceback")
    total = sum(stat.size_diff for stat in stats)
    by_site: Counter[str] = Counter()
    by_owner: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for stat in stats:
        by_site[site(stat.traceback)] += stat.size_diff
        blocks[site(stat.traceback)] += stat.count_diff
        by_owner[owner(stat.traceback)] += stat.size_diff
    objects = after.objects.copy()
    objects.subtract(before.objects)
    tasks = after.tasks.copy()
    tasks.subtract(before.tasks)
    return {
        "sockets": sockets,
        "traced_bytes_per_socket": round(total / sockets),
        "by_package": [
            {"package": name, "bytes_per_socket": round(size / sockets)}
            for name, size in by_owner.most_common(top)
        ],
        "by_site": [
            {
                "site": name,
                "bytes_per_socket": round(size / sockets),
                "blocks_per_socket": round(blocks[name] / sockets, 2),
            }
            for name, size in by_site.most_common(top)
        ],
        "objects_per_socket": [
            {"type": name, "per_socket": round(count / sockets, 2)}
            for name, count in objects.most_common(top)
            if count > 0
        ],
        "tasks_per_socket": [
            {"waiting": name, "per_socket": round(count / sockets, 2)}
            for name, count in tasks.most_common(top)
            if count > 0
        ],
    }


async def profile(sockets: int, users: int, rooms: int, top: int) -> dict[str, Any]:
    run_id = secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="plop-socket-profile-") as scratch:
        directory = Path(scratch)
        settings = {
            **plop_settings(),
            "PLOP_TRACEMALLOC_DIR": str(directory),
            # Traced, the server may take longer than the usual deadline to answer a
            # connection_init; a socket closed for it would be opened again, and again.
            "PLOP_CONNECTION_INIT_TIMEOUT_SECONDS": str(SUBSCRIBE_TIMEOUT_SECONDS),
        }
        server = plop_server(f"socket-profile-{run_id}", "embedded", run_id, settings)
        async with running(server):
            target = Target("plop", "Plop (embedded)", server)
            population = await target.populate(users, rooms)
            sender = Sender(target, population.accounts[0], population.rooms)
            pool = LoadPool(1)
            try:
                await sender.wave()  # sockets start mid-history, as in the bench
                before = await _dump(target, directory, 1)
                plans = [
                    Plan(
                        population.account_of(index).token,
                        population.room_of(index),
                        sender.last_seq[population.room_of(index)],
                    )
                    for index in range(sockets)
                ]
                reply = await pool.open(
                    target.ws_urls, plans, attempts=OPEN_ATTEMPTS, concurrency=CONNECT_CONCURRENCY
                )
                held, reached = await _wait_subscriptions(target, reply["opened"])
                if not reached:
                    raise RuntimeError(f"only {held} of {sockets} subscribed: {reply['errors']}")
                after = await _dump(target, directory, 2)
            finally:
                await pool.close()
                await sender.close()
        return analyse(before, after, reply["opened"], top)


def _text(report: dict[str, Any]) -> str:
    lines = [
        f"{report['sockets']} idle subscribed sockets; traced bytes per socket: "
        f"{report['traced_bytes_per_socket']}",
        "",
        "bytes per socket by package:",
        *(f"  {row['bytes_per_socket']:>7}  {row['package']}" for row in report["by_package"]),
        "",
        "bytes (blocks) per socket by site:",
        *(
            f"  {row['bytes_per_socket']:>7} ({row['blocks_per_socket']:>5})  {row['site']}"
            for row in report["by_site"]
        ),
        "",
        "objects per socket (gc-tracked):",
        *(f"  {row['per_socket']:>6}  {row['type']}" for row in report["objects_per_socket"]),
        "",
        "asyncio tasks per socket, by where they wait:",
        *(f"  {row['per_socket']:>6}  {row['waiting']}" for row in report["tasks_per_socket"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sockets", type=int, default=2_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--top", type=int, default=30, help="rows per table")
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    options = parser.parse_args(argv)
    report = asyncio.run(profile(options.sockets, options.users, options.rooms, options.top))
    if options.out is not None:
        options.out.write_text(json.dumps(report, indent=2))
    print(_text(report))  # noqa: T201 (a command's output)


if __name__ == "__main__":
    main()
