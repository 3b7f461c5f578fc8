"""stored: does a send get slower as a room's history grows?

For each backend, one Plop server and two rooms. First the send latency of an
empty room on an empty store; then one room is filled with ``--messages`` stored
messages (10,000 by default) through sendMessage, and sends go to the full room and
to the empty one in turn, one at a time, so that noise from the machine falls on
both alike. The figure is the full room's latency over the empty store's (p50 and
mean): 1.0 when history costs nothing. The empty room beside the full one tells a
cost of the store's size from a cost of the room's, and, measured turn by turn with
the full room, gives a ratio that the machine's changing load cannot skew.

The bookkeeping: every send answered, and each room's seqs are 1..n, each once.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from matplotlib.figure import Figure

from bench.common import Options, SeqLedger, plop_target
from bench.report import Plot, Report, Table, latency_summary, ratio, summed
from bench.targets import Account, Target

# Senders that fill the full room at once (they share its seq, as users of one room do).
FILL_CONCURRENCY = 8
WARMUP_MESSAGES = 5


def _summary(latencies: list[float]) -> dict[str, float]:
    mean = statistics.fmean(latencies) * 1000 if latencies else 0.0
    return {**latency_summary(latencies), "mean_ms": round(mean, 2)}


async def _fill(
    target: Target, account: Account, room: str, ledger: SeqLedger, count: int
) -> float:
    """Stores ``count`` messages in the room; the seconds it took."""
    budget = [count]
    started = time.monotonic()

    async def sender() -> None:
        connection = target.connection()
        try:
            while budget[0] > 0:
                budget[0] -= 1
                await ledger.send(target, connection, account, room)
        finally:
            await connection.close()

    await asyncio.gather(*(sender() for _ in range(FILL_CONCURRENCY)))
    return time.monotonic() - started


async def _run_backend(options: Options, backend: str) -> dict[str, Any]:
    samples = options.max_requests
    async with plop_target(options, backend) as target:
        population = await target.populate(1, 2)
        account = population.accounts[0]
        empty_room, full_room = population.rooms
        ledgers = {empty_room: SeqLedger(), full_room: SeqLedger()}
        connection = target.connection()
        try:
            for _ in range(WARMUP_MESSAGES):
                await ledgers[empty_room].send(target, connection, account, empty_room)
            before = [
                await ledgers[empty_room].send(target, connection, account, empty_room)
                for _ in range(samples)
            ]
            fill_seconds = await _fill(
                target, account, full_room, ledgers[full_room], options.messages
            )
            beside: list[float] = []
            full: list[float] = []
            for _ in range(samples):
                full.append(await ledgers[full_room].send(target, connection, account, full_room))
                beside.append(
                    await ledgers[empty_room].send(target, connection, account, empty_room)
                )
        finally:
            await connection.close()
    checks = [ledger.check() for ledger in ledgers.values()]
    empty, crowded, next_door = _summary(before), _summary(full), _summary(beside)
    return {
        "target": target.label,
        "backend": backend,
        "stored_messages": options.messages,
        "samples": samples,
        "fill_seconds": round(fill_seconds, 2),
        "fill_per_second": round(options.messages / fill_seconds, 1) if fill_seconds else None,
        "empty": empty,
        "full": crowded,
        "beside_full": next_door,
        "ratio_p50": ratio(crowded["p50_ms"], empty["p50_ms"]),
        "ratio_mean": ratio(crowded["mean_ms"], empty["mean_ms"]),
        "ratio_beside_p50": ratio(next_door["p50_ms"], empty["p50_ms"]),
        # Measured at the same time, turn by turn: the machine's load changes neither.
        "ratio_full_to_beside_p50": ratio(crowded["p50_ms"], next_door["p50_ms"]),
        "requests": WARMUP_MESSAGES + 3 * samples + options.messages,
        "highest_seq": {
            "empty": max(ledgers[empty_room].seqs, default=0),
            "full": max(ledgers[full_room].seqs, default=0),
        },
        **{name: sum(check[name] for check in checks) for name in checks[0]},
        "error_samples": [error for ledger in ledgers.values() for error in ledger.errors][:3],
        "_latencies": {"empty": before, "full": full, "beside_full": beside},
    }


async def run(options: Options) -> Report:
    rows = [await _run_backend(options, backend) for backend in options.backends]
    latencies = {row["target"]: row.pop("_latencies") for row in rows}
    report = Report(
        scenario="stored",
        title="Send latency with a room's history stored",
        argv=options.argv,
        parameters={
            "stored_messages": options.messages,
            "samples": options.max_requests,
            "fill_concurrency": FILL_CONCURRENCY,
            "backends": options.backends,
            "smoke": options.smoke,
        },
        data={"rows": rows},
    )
    report.checks = summed(
        rows, "requests", "answered", "errors", "duplicates", "seq_gaps", "out_of_order"
    )
    report.tables.append(
        Table(
            "Send latency, one send at a time (ratios: to the empty room on an empty store)",
            [
                "server",
                "stored",
                "empty p50 ms",
                "full p50 ms",
                "full/empty p50",
                "full/empty mean",
                "beside full p50 ms",
                "beside/empty p50",
                "full/beside p50",
                "fill msg/s",
                "errors",
            ],
            [
                [
                    row["target"],
                    row["stored_messages"],
                    row["empty"]["p50_ms"],
                    row["full"]["p50_ms"],
                    row["ratio_p50"],
                    row["ratio_mean"],
                    row["beside_full"]["p50_ms"],
                    row["ratio_beside_p50"],
                    row["ratio_full_to_beside_p50"],
                    row["fill_per_second"],
                    row["errors"],
                ]
                for row in rows
            ],
        )
    )
    report.notes += [
        f"Each figure is {options.max_requests:,} sendMessage round trips, one at a time, on "
        "one keep-alive connection; the full room's and its neighbour's sends alternate.",
        f"The full room is filled by {FILL_CONCURRENCY} concurrent senders through "
        "sendMessage (their seqs must come out 1..n, each once).",
        "The target: the full room's latency within 1.5x of the empty room's.",
    ]
    if report.checks["errors"]:
        report.notes.append(
            "Errors: " + "; ".join(sample for row in rows for sample in row["error_samples"])[:1000]
        )

    def distributions(figure: Figure) -> None:
        axes = figure.add_subplot(1, 1, 1)
        for label, series in latencies.items():
            for name, values in series.items():
                ordered = sorted(value * 1000 for value in values)
                if ordered:
                    axes.plot(
                        [index / len(ordered) for index in range(len(ordered))],
                        ordered,
                        label=f"{label}: {name.replace('_', ' ')}",
                    )
        axes.set(xlabel="fraction of sends", ylabel="ms", yscale="log", title="send latency")
        axes.legend(fontsize="small")

    report.plots.append(Plot("latency", distributions))
    return report
