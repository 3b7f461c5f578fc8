"""send: sendMessage throughput and latency at several concurrencies.

Each concurrent sender has a connection and a room of its own, and sends one message
after another for a fixed time (or until the request budget is spent). The raw
FastAPI POST endpoint of the baseline answers the same request body in the same
run, which gives each Plop figure its ratio.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psutil
from matplotlib.figure import Figure

from bench.common import Options, Sender, baseline_target, machine_busy_seconds, plop_target
from bench.report import Plot, Report, Table, latency_summary, ratio, summed
from bench.server import REPO
from bench.targets import Population, Target

WARMUP_MESSAGES = 5


def _database_processes() -> list[psutil.Process]:
    """FerretDB and PostgreSQL (with its backends), from the real services' pid files;
    none if they are not running here. Their CPU shares the machine with Plop's."""
    services = Path(os.environ.get("PLOP_SERVICES_DIR", REPO / ".services"))
    found: list[psutil.Process] = []
    for pid_file in (
        services / "mongo" / "ferretdb.pid",
        services / "mongo" / "pg" / "postmaster.pid",
    ):
        try:
            process = psutil.Process(int(pid_file.read_text().split()[0]))
            found += [process, *process.children(recursive=True)]
        except (OSError, ValueError, IndexError, psutil.Error):
            continue
    return found


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:  # a PostgreSQL backend that ended meanwhile
            continue
        total += times.user + times.system
    return total


async def closed_loop(
    target: Target, senders: list[Sender], seconds: float, budget: int | None, warm_up: int
) -> dict[str, Any]:
    """Every sender of every room of ``senders`` sends one message after another, each
    waiting for its answer, for ``seconds`` (or until ``budget`` sends are spent), after
    ``warm_up`` messages per sender; the figures of that time, and its books."""
    await asyncio.gather(*(sender.burst(warm_up * sender.per_room) for sender in senders))
    warm_sent = sum(sender.sent for sender in senders)
    latencies: list[float] = []
    left = [budget]
    stop_at = time.monotonic() + seconds
    cpu_before = target.server.cpu_seconds()
    database = _database_processes() if "real" in target.label else []
    database_before, busy_before = _cpu_seconds(database), machine_busy_seconds()

    async def run(sender: Sender, room: str, lane: int) -> None:
        while time.monotonic() < stop_at:
            if left[0] is not None:
                if left[0] <= 0:
                    return
                left[0] -= 1
            started = time.perf_counter()
            await sender.send_one(room, lane)
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(
        *(
            run(sender, room, lane)
            for sender in senders
            for room in sender.rooms
            for lane in range(sender.per_room)
        )
    )
    elapsed = time.monotonic() - started
    cpu = target.server.cpu_seconds() - cpu_before
    database_cpu = _cpu_seconds(database) - database_before
    busy = machine_busy_seconds() - busy_before
    sent = sum(sender.sent for sender in senders) - warm_sent
    cores = psutil.cpu_count() or 1
    errors = [error for sender in senders for error in sender.errors]
    return {
        "requests": len(latencies),
        "answered": sent,
        # Errors and UNAVAILABLE answers, the warm-up's included.
        "errors": len(errors),
        "unavailable": sum(sender.unavailable for sender in senders),
        "error_samples": errors[:3],
        "seq_gaps": sum(sender.seq_gaps for sender in senders),
        "seconds": round(elapsed, 3),
        "per_second": round(sent / elapsed, 1) if elapsed else 0.0,
        "server_cpu_us_per_request": round(cpu / sent * 1e6, 1) if sent else None,
        # On the real services: FerretDB's and PostgreSQL's CPU per request, and their
        # share and the whole machine's busy share of its CPU during the level.
        "database_cpu_us_per_request": (
            round(database_cpu / sent * 1e6, 1) if database and sent else None
        ),
        "database_cpu_share": (
            round(database_cpu / (elapsed * cores), 3) if database and elapsed else None
        ),
        "machine_cpu_busy_share": round(busy / (elapsed * cores), 3) if elapsed else None,
        **latency_summary(latencies),
    }


async def _measure(
    target: Target,
    population: Population,
    concurrency: int,
    options: Options,
    last_seq: dict[str, int],
) -> dict[str, Any]:
    senders = [
        Sender(target, population.account_of(index), [population.room_of(index)], last_seq)
        for index in range(concurrency)
    ]
    warm_up = 1 if options.smoke else WARMUP_MESSAGES
    try:
        figures = await closed_loop(
            target, senders, options.duration, options.max_requests, warm_up
        )
    finally:
        await asyncio.gather(*(sender.close() for sender in senders))
        for sender in senders:
            last_seq.update(sender.last_seq)
    return {"target": target.label, "concurrency": concurrency, **figures}


def _database_cell(row: dict[str, Any]) -> str:
    if row["database_cpu_us_per_request"] is None:
        return "—"
    return f"{row['database_cpu_us_per_request']:,.0f} ({row['database_cpu_share']:.0%})"


async def _run_target(target: Target, options: Options) -> list[dict[str, Any]]:
    users = max(1, min(max(options.concurrency), options.users))
    population = await target.populate(users, max(options.concurrency))
    last_seq: dict[str, int] = {}
    return [
        await _measure(target, population, level, options, last_seq)
        for level in options.concurrency
    ]


async def run(options: Options) -> Report:
    rows: list[dict[str, Any]] = []
    async with baseline_target(options) as baseline:
        rows += await _run_target(baseline, options)
    for backend in options.backends:
        async with plop_target(options, backend) as plop:
            rows += await _run_target(plop, options)
    raw = {row["concurrency"]: row for row in rows if row["target"] == "raw FastAPI"}
    for row in rows:
        reference = raw[row["concurrency"]]
        row["ratio_per_second"] = ratio(row["per_second"], reference["per_second"])
        row["ratio_p50"] = ratio(row["p50_ms"], reference["p50_ms"])
        row["ratio_p99"] = ratio(row["p99_ms"], reference["p99_ms"])

    report = Report(
        scenario="send",
        title="sendMessage throughput and latency",
        argv=options.argv,
        parameters={
            "concurrency": options.concurrency,
            "duration_seconds": options.duration,
            "max_requests": options.max_requests,
            "backends": options.backends,
            "users": options.users,
            "smoke": options.smoke,
        },
        data={"rows": rows},
    )
    report.checks = summed(rows, "requests", "answered", "errors", "seq_gaps")
    report.tables.append(
        Table(
            "Throughput and latency (ratios: to the raw FastAPI POST at the same concurrency)",
            [
                "server",
                "concurrency",
                "requests",
                "req/s",
                "vs raw",
                "p50 ms",
                "p99 ms",
                "p99 vs raw",
                "server CPU µs/req",
                "FerretDB+PostgreSQL CPU µs/req (share of the machine)",
                "machine busy",
                "errors",
            ],
            [
                [
                    row["target"],
                    row["concurrency"],
                    row["requests"],
                    row["per_second"],
                    row["ratio_per_second"],
                    row["p50_ms"],
                    row["p99_ms"],
                    row["ratio_p99"],
                    row["server_cpu_us_per_request"],
                    _database_cell(row),
                    f"{row['machine_cpu_busy_share']:.0%}",
                    row["errors"],
                ]
                for row in rows
            ],
        )
    )
    report.notes += [
        "Each concurrent sender has its own HTTP/1.1 keep-alive connection and its own "
        "room (no two senders contend for one room's seq); senders share "
        f"{options.users} signed-up users.",
        "Latency is the HTTP round trip of one sendMessage measured by the sender; "
        "the load runs in the bench process, the server in its own process (one worker).",
        "The raw FastAPI POST parses the same JSON body and answers the same shape "
        "(no auth, no storage): it is the ceiling of the HTTP stack, not a messenger.",
        "On the real services FerretDB and its PostgreSQL share the same cores: their CPU "
        "per request (psutil, from the services' pid files) bounds the rate one machine "
        "can reach whatever Plop's own CPU; 'machine busy' is every process's share, "
        "the load generator's and other work's included.",
        f"Each level runs {options.duration:g} s or {options.max_requests:,} requests, "
        f"after {1 if options.smoke else WARMUP_MESSAGES} warm-up messages per sender.",
    ]
    if report.checks["errors"]:
        report.notes.append(
            "Errors: " + "; ".join(sample for row in rows for sample in row["error_samples"])[:1000]
        )

    def throughput(figure: Figure) -> None:
        axes = figure.add_subplot(1, 2, 1)
        latency = figure.add_subplot(1, 2, 2)
        for label in dict.fromkeys(row["target"] for row in rows):
            mine = [row for row in rows if row["target"] == label]
            levels = [row["concurrency"] for row in mine]
            axes.plot(levels, [row["per_second"] for row in mine], marker="o", label=label)
            latency.plot(levels, [row["p99_ms"] for row in mine], marker="o", label=label)
        axes.set(xscale="log", xlabel="concurrency", ylabel="requests/s", title="throughput")
        latency.set(
            xscale="log", yscale="log", xlabel="concurrency", ylabel="ms", title="p99 latency"
        )
        axes.legend(fontsize="small")

    report.plots.append(Plot("throughput", throughput))
    return report
