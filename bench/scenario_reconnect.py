"""reconnect: every subscriber drops and reconnects at once while messages keep flowing.

``subscribers`` sockets follow messageAdded over ``rooms`` rooms while a sender
sends one message to every room ``rate`` times a second. Then every socket is cut
at once (no close handshake, as a network failure), stays away ``down_seconds``,
and reconnects with afterSeq = the last seq it received. A subscriber has caught up
when it receives the first message sent after it resubscribed (delivery is in seq
order, so it then has all before it). In the end every subscriber must have every
seq of its room exactly once: lost = 0, duplicated = 0.

The raw baseline runs the same storm first (same sockets, rooms, rate and time
away): it has no history to resume from, so what it gives is the yardstick of the
reopen itself, the time to reopen every socket and see each get a live message
again. Plop's catch-up is compared with raw's reopen time (``catch_up_to_raw_reopen``,
Plop's ``caught_up_seconds`` over raw's ``reconnect_seconds``); the
messages raw never delivers are not counted as its losses.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from matplotlib.figure import Figure

from bench.common import Options, Sender, baseline_target, plop_target
from bench.load import BUCKET_SECONDS, LoadPool, Plan, merge_rounds
from bench.report import Plot, Report, Table, latency_summary, percentile, ratio
from bench.targets import Target

SUBSCRIBERS_PER_WORKER = 5_000
LIVE_BEFORE_SECONDS = 2.0
LIVE_AFTER_SECONDS = 1.0
FINAL_WAIT_SECONDS = 120.0
# Raw never sends what was missed: its last count waits only for messages in flight.
RAW_FINAL_WAIT_SECONDS = 1.0


async def _run_backend(target: Target, options: Options) -> dict[str, Any]:
    total = options.subscribers[0]
    users = max(1, min(options.users, total))
    population = await target.populate(users, options.rooms)
    rooms = population.rooms
    sender = Sender(target, population.accounts[0], rooms)
    plans = [
        Plan(population.account_of(index).token, population.room_of(index), 0)
        for index in range(total)
    ]
    pool = LoadPool(options.workers or max(1, math.ceil(total / SUBSCRIBERS_PER_WORKER)))
    flowing = asyncio.Event()
    stop = asyncio.Event()

    async def flow() -> None:
        interval = 1.0 / options.rate
        started = time.monotonic()
        number = 0
        while not stop.is_set():
            await sender.wave()
            flowing.set()
            number += 1
            delay = started + number * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    try:
        opened = await pool.open(target.ws_urls, plans)
        await target.wait_subscriptions(opened["opened"])
        await pool.all("round")
        sending = asyncio.create_task(flow())
        await flowing.wait()
        await asyncio.sleep(0.5 if options.smoke else LIVE_BEFORE_SECONDS)
        seq_at_drop = dict(sender.last_seq)
        cpu_before = target.server.cpu_seconds()
        drops = await pool.all("drop", {"down_seconds": options.down_seconds, "concurrency": total})
        seq_at_reconnect = dict(sender.last_seq)
        caught = await pool.all("caught_up", {"within": options.max_seconds})
        cpu = target.server.cpu_seconds() - cpu_before
        await asyncio.sleep(LIVE_AFTER_SECONDS)
        stop.set()
        await sending
        expected = dict(sender.last_seq)
        within = FINAL_WAIT_SECONDS if target.kind == "plop" else RAW_FINAL_WAIT_SECONDS
        merged = merge_rounds(await pool.all("wait", {"expected": expected, "within": within}))
    finally:
        stop.set()
        await pool.close()
        await sender.close()
    dropped_at = min(drop["dropped_at"] for drop in drops)
    reconnect_started = min(drop["reconnect_started"] for drop in drops)
    times = sorted(t - reconnect_started for reply in caught for t in reply["caught_up_times"])
    per_room = {room: expected[room] for room in rooms}
    expected_deliveries = sum(per_room[population.room_of(index)] for index in range(total))
    missed = [seq_at_reconnect[room] - seq_at_drop[room] for room in rooms]
    return {
        "target": target.label,
        "subscribers": total,
        "rooms": len(rooms),
        "users": users,
        "opened": opened["opened"],
        "messages_per_room": per_room,
        "expected_deliveries": expected_deliveries,
        "deliveries": merged["deliveries"],
        "lost": merged["lost"],
        "duplicates": merged["duplicates"],
        "beyond_expected": merged["beyond_expected"],
        "errors": merged["error_count"],
        "error_samples": merged["errors"],
        "retried_opens": merged["retried_opens"],
        "retry_samples": merged["retry_samples"],
        "send_errors": len(sender.errors),
        "seq_gaps": sender.seq_gaps,
        "failed_reconnects": sum(drop["failed_sockets"] for drop in drops),
        "caught_up": sum(reply["caught_up"] for reply in caught),
        "reconnect_seconds": round(
            max(drop["reconnected_at"] for drop in drops) - reconnect_started, 3
        ),
        "caught_up_seconds": round(times[-1], 3) if times else None,
        "caught_up_p50_seconds": round(percentile(times, 0.5), 3),
        "caught_up_p99_seconds": round(percentile(times, 0.99), 3),
        "down_seconds": options.down_seconds,
        "drop_to_caught_up_seconds": round(times[-1] + reconnect_started - dropped_at, 3)
        if times
        else None,
        "messages_missed_per_room": max(missed, default=0),
        "server_cpu_seconds_to_catch_up": round(cpu, 2),
        "closed_by_server": merged["closed_by_server"],
        "timeline": [
            (round(bucket * BUCKET_SECONDS - dropped_at, 2), count / BUCKET_SECONDS)
            for bucket, count in sorted(merged["buckets"].items())
        ],
        "catch_up_times": times,
        "latency_overall": latency_summary(merged["latencies"]),
    }


async def run(options: Options) -> Report:
    async with baseline_target(options) as raw:
        raw_row = await _run_backend(raw, options)
    # Plotted, not kept in the JSON: the results stay small.
    raw_curves = {key: raw_row.pop(key) for key in ("catch_up_times", "timeline")}
    rows = []
    for backend in options.backends:
        async with plop_target(options, backend) as plop:
            row = await _run_backend(plop, options)
        # Target: caught up within twice the time raw needs to reopen the same sockets.
        row["catch_up_to_raw_reopen"] = ratio(
            row["caught_up_seconds"] or 0.0, raw_row["reconnect_seconds"]
        )
        rows.append(row)
    report = Report(
        scenario="reconnect",
        title="Reconnect: every subscriber drops and resumes with afterSeq at once",
        argv=options.argv,
        parameters={
            "subscribers": options.subscribers[0],
            "rooms": options.rooms,
            "users": options.users,
            "rate_per_room": options.rate,
            "down_seconds": options.down_seconds,
            "max_seconds": options.max_seconds,
            "backends": options.backends,
            "smoke": options.smoke,
        },
        data={"rows": rows, "raw_reopen": raw_row},
    )
    report.checks = {
        "expected_deliveries": sum(row["expected_deliveries"] for row in rows),
        "deliveries": sum(row["deliveries"] for row in rows),
        "lost": sum(row["lost"] for row in rows),
        "duplicates": sum(row["duplicates"] for row in rows),
        "errors": sum(row["errors"] for row in rows),
        "send_errors": sum(row["send_errors"] for row in rows),
        "seq_gaps": sum(row["seq_gaps"] for row in rows),
        "failed": sum(row["failed_reconnects"] for row in rows)
        + sum(row["subscribers"] - row["caught_up"] for row in rows),
        "subscribers": sum(row["subscribers"] for row in rows),
        "opened": sum(row["opened"] for row in rows),
        "raw_failed": raw_row["failed_reconnects"] + raw_row["subscribers"] - raw_row["caught_up"],
    }
    report.tables.append(
        Table(
            "Drop and resume",
            [
                "server",
                "subscribers",
                "rooms",
                "missed per room",
                "reconnect s",
                "caught up p50 s",
                "caught up p99 s",
                "all caught up s",
                "from drop s",
                "deliveries",
                "lost",
                "dup",
                "retried handshakes",
                "x raw reopen",
            ],
            [
                [
                    row["target"],
                    row["subscribers"],
                    row["rooms"],
                    row["messages_missed_per_room"],
                    row["reconnect_seconds"],
                    row["caught_up_p50_seconds"],
                    row["caught_up_p99_seconds"],
                    row["caught_up_seconds"],
                    row["drop_to_caught_up_seconds"],
                    f"{row['deliveries']:,}/{row['expected_deliveries']:,}",
                    row["lost"],
                    row["duplicates"],
                    row["retried_opens"],
                    row["catch_up_to_raw_reopen"],
                ]
                for row in rows
            ],
        )
    )
    report.tables.append(
        Table(
            "Raw baseline: the same sockets reopened (no history to resume)",
            ["server", "subscribers", "reconnect s", "all live again s", "failed"],
            [
                [
                    raw_row["target"],
                    raw_row["subscribers"],
                    raw_row["reconnect_seconds"],
                    raw_row["caught_up_seconds"],
                    raw_row["failed_reconnects"],
                ]
            ],
        )
    )
    report.notes += [
        f"A sender sends one message to each room {options.rate:g} times a second "
        "throughout; sockets are cut without a close handshake, stay away "
        f"{options.down_seconds:g} s, then all reconnect at once with afterSeq.",
        "Caught up: a subscriber's first message sent after it resubscribed (seq order "
        "means everything before it arrived). Times count from the start of the "
        "reconnect; 'from drop' adds the time away.",
        f"Subscribers share {options.users} signed-up users, several sockets each.",
        "Raw FastAPI runs the same storm first; with no history it only reopens, and "
        "'all live again' is when each of its sockets got a message sent after it "
        "resubscribed. 'x raw reopen' is Plop's 'all caught up' over raw's 'reconnect s' "
        "(every socket reopened and acknowledged).",
    ]

    def catch_up(figure: Figure) -> None:
        axes = figure.add_subplot(1, 2, 1)
        for row in [{**raw_row, **raw_curves}, *rows]:
            times = row["catch_up_times"]
            axes.plot(times, [(i + 1) / len(times) for i in range(len(times))], label=row["target"])
        axes.set(xlabel="seconds since reconnecting", ylabel="caught up", title="catch-up CDF")
        axes.legend(fontsize="small")
        flow = figure.add_subplot(1, 2, 2)
        for row in [{**raw_row, **raw_curves}, *rows]:
            points = row["timeline"]
            flow.plot([p[0] for p in points], [p[1] for p in points], label=row["target"])
        flow.axvline(0, color="grey", linestyle="--")
        flow.set(xlabel="seconds since the drop", ylabel="deliveries/s", title="deliveries")

    report.plots.append(Plot("catch-up", catch_up))
    return report
