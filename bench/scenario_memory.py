"""memory: server RSS per idle subscribed connection, and how many subscriptions one
server process holds.

- idle: open ``subscribers`` sockets with one messageAdded subscription each, in four
  steps, reading the server's RSS (with its children) after each; the slope of a
  least-squares line is the memory per idle subscribed connection. The same on the
  raw baseline in the same run gives the ratio.
- deliveries: with the idle sockets open, ``deliveries`` messages in all reach them
  (every one counted), then every socket closes; RSS after closing is compared with
  RSS while they were open.
- ramp (Plop only): add ``step`` subscriptions at a time (``per_socket`` to a socket)
  until ``max_subscriptions``, a failure, the time bound or the RSS bound; the count
  held at the end is the most this run saw one worker hold.

After each part, one message per room must reach every subscription exactly once.
With ``--peer centrifugo``, Centrifugo's idle part runs too (same sockets, its JSON
protocol) and Plop's rows carry their ratio to it.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import psutil
from matplotlib.figure import Figure

from bench import centrifugo
from bench.common import Options, Sender, baseline_target, plop_target
from bench.load import LoadPool, Plan, merge_rounds
from bench.report import Plot, Report, Table, ratio
from bench.targets import Population, Target

IDLE_STEPS = 4
SETTLE_SECONDS = 1.5
SMOKE_SETTLE_SECONDS = 0.2
SOCKETS_PER_WORKER = 5_000
STEP_TIMEOUT_SECONDS = 30.0
# Handshakes at once: memory is measured on sockets, not on bursts of connects.
CONNECT_CONCURRENCY = 50
VERIFY_TIMEOUT_SECONDS = 120.0
# A refused socket is retried with backoff, as a client would; only then it counts.
OPEN_ATTEMPTS = 5


def _slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per subscription."""
    count = len(points)
    if count < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if not spread:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _plans(population: Population, first: int, count: int, last_seq: dict[str, int]) -> list[Plan]:
    plans = []
    for index in range(first, first + count):
        room = population.room_of(index)
        plans.append(Plan(population.account_of(index).token, room, last_seq[room]))
    return plans


async def _verify(pool: LoadPool, sender: Sender, waves: int = 1) -> dict[str, Any]:
    """``waves`` messages per room: every open subscription must get each once."""
    await pool.all("round")
    await sender.burst(waves)
    expected = dict(sender.last_seq)
    merged = merge_rounds(
        await pool.all("wait", {"expected": expected, "within": VERIFY_TIMEOUT_SECONDS * waves})
    )
    return {
        "subscribers": merged["subscribers"],
        "expected_deliveries": merged["subscribers"] * waves,
        "deliveries": merged["deliveries"],
        "lost": merged["lost"],
        "duplicates": merged["duplicates"],
        "errors": merged["error_count"] + len(sender.errors),
        "closed_by_server": merged["closed_by_server"],
    }


async def _settled_rss(target: Target, options: Options) -> int:
    await asyncio.sleep(SMOKE_SETTLE_SECONDS if options.smoke else SETTLE_SECONDS)
    return target.server.rss_bytes()


async def _idle(target: Target, population: Population, options: Options) -> dict[str, Any]:
    total = options.subscribers[0]
    sender = Sender(target, population.accounts[0], population.rooms)
    await sender.wave()  # the rooms' first message, so that idle sockets start mid-history
    base_rss = await _settled_rss(target, options)
    points = [(0, base_rss)]
    pool = LoadPool(max(1, math.ceil(total / SOCKETS_PER_WORKER)))
    opened = 0
    failed = 0
    refusals = 0
    try:
        for step in range(1, IDLE_STEPS + 1):
            upto = total * step // IDLE_STEPS
            reply = await pool.open(
                target.ws_urls,
                _plans(population, opened, upto - opened, sender.last_seq),
                attempts=OPEN_ATTEMPTS,
                concurrency=CONNECT_CONCURRENCY,
                protocol=target.protocol,
            )
            refusals += reply["refusals"]
            opened += reply["opened"]
            failed += reply["failed_sockets"]
            await target.wait_subscriptions(opened, STEP_TIMEOUT_SECONDS)
            points.append((opened, await _settled_rss(target, options)))
        verify = await _verify(pool, sender)
        # Then many deliveries with every socket open: closing them all afterwards
        # must give back what they held (nothing kept per delivery).
        waves = max(1, math.ceil(options.deliveries / max(1, opened)))
        delivered = await _verify(pool, sender, waves)
        rss_after_deliveries = await _settled_rss(target, options)
    finally:
        await pool.close()
        await sender.close()
        await target.wait_no_subscriptions()
    after_close = await _settled_rss(target, options)
    per_subscription = _slope(points)
    return {
        "target": target.label,
        "subscribers": total,
        "opened": opened,
        "failed_sockets": failed,
        "refused_then_retried": refusals,
        "rss_mb_start": round(base_rss / 2**20, 1),
        "rss_mb_at_most": round(points[-1][1] / 2**20, 1),
        "rss_mb_after_close": round(after_close / 2**20, 1),
        "rss_mb_after_deliveries": round(rss_after_deliveries / 2**20, 1),
        "after_close_vs_open": ratio(after_close, points[-1][1]),
        "kib_per_idle_subscription": round(per_subscription / 1024, 1),
        "points": [(count, round(rss / 2**20, 1)) for count, rss in points],
        "verify": verify,
        "deliveries_then_closed": delivered,
    }


async def _ramp(target: Target, population: Population, options: Options) -> dict[str, Any]:
    sender = Sender(target, population.accounts[0], population.rooms)
    # One message to each room first, so that the sender knows where each room's seq
    # stands and the ramp's subscriptions start at its head: a subscription given the
    # room's whole history would still be catching up when the books are read.
    await sender.wave()
    base = await target.subscriptions()
    max_rss = psutil.virtual_memory().total // 2
    sockets = math.ceil(options.max_subscriptions / options.per_socket)
    pool = LoadPool(max(1, math.ceil(sockets / SOCKETS_PER_WORKER)))
    deadline = time.monotonic() + options.max_seconds
    steps: list[dict[str, Any]] = []
    held = 0
    stop = f"reached the cap of {options.max_subscriptions:,}"
    try:
        while held < options.max_subscriptions:
            count = min(options.step, options.max_subscriptions - held)
            started = time.monotonic()
            reply = await pool.open(
                target.ws_urls,
                _plans(population, held, count, sender.last_seq),
                per_socket=options.per_socket,
                attempts=OPEN_ATTEMPTS,
                concurrency=CONNECT_CONCURRENCY,
            )
            now_held, reached = await target.wait_subscriptions(
                base + held + reply["opened"], STEP_TIMEOUT_SECONDS
            )
            rss = target.server.rss_bytes()
            steps.append(
                {
                    "subscriptions": now_held - base,
                    "rss_mb": round(rss / 2**20, 1),
                    "step_seconds": round(time.monotonic() - started, 2),
                    "failed_sockets": reply["failed_sockets"],
                    "refused_then_retried": reply["refusals"],
                }
            )
            held = now_held - base
            if reply["failed_sockets"] or not reached:
                stop = (
                    f"a step failed: {reply['failed_sockets']} sockets refused, "
                    f"{now_held - base:,} held; {reply['errors'][:1]}"
                )
                break
            if rss > max_rss:
                stop = f"RSS passed half the machine's memory ({rss / 2**30:.1f} GiB)"
                break
            if time.monotonic() > deadline:
                stop = f"the time bound of {options.max_seconds:g} s"
                break
        verify = await _verify(pool, sender)
    finally:
        await pool.close()
        await sender.close()
        await target.wait_no_subscriptions()
    return {
        "target": target.label,
        "per_socket": options.per_socket,
        "held": held,
        "stopped_by": stop,
        "steps": steps,
        "verify": verify,
    }


async def run(options: Options) -> Report:
    idle: list[dict[str, Any]] = []
    ramps: list[dict[str, Any]] = []
    users = max(1, min(options.users, options.subscribers[0]))
    async with baseline_target(options) as baseline:
        population = await baseline.populate(users, options.rooms)
        idle.append(await _idle(baseline, population, options))
    with_peer = "centrifugo" in options.peers
    if with_peer:
        async with centrifugo.centrifugo_target(
            f"{options.scenario}-{options.run_id}-centrifugo"
        ) as peer:
            population = await peer.populate(users, options.rooms)
            idle.append(await _idle(peer, population, options))
    for backend in options.backends:
        async with plop_target(options, backend) as plop:
            population = await plop.populate(users, options.rooms)
            idle.append(await _idle(plop, population, options))
            ramps.append(await _ramp(plop, population, options))
    raw = idle[0]["kib_per_idle_subscription"]
    peer_kib = next(
        (row["kib_per_idle_subscription"] for row in idle if row["target"] == centrifugo.LABEL),
        0.0,
    )
    for row in idle:
        row["ratio_kib"] = ratio(row["kib_per_idle_subscription"], raw)
        if with_peer:
            row["ratio_kib_centrifugo"] = ratio(row["kib_per_idle_subscription"], peer_kib)

    report = Report(
        scenario="memory",
        title="Memory per idle subscribed connection, and subscriptions held",
        argv=options.argv,
        parameters={
            "idle_subscribers": options.subscribers[0],
            "rooms": options.rooms,
            "users": users,
            "max_subscriptions": options.max_subscriptions,
            "per_socket": options.per_socket,
            "step": options.step,
            "max_seconds": options.max_seconds,
            "deliveries_before_closing": options.deliveries,
            "backends": options.backends,
            "peers": options.peers,
            "smoke": options.smoke,
        },
        data={"idle": idle, "ramp": ramps},
    )
    verifies = [row["verify"] for row in idle + ramps]
    verifies += [row["deliveries_then_closed"] for row in idle]
    report.checks = {
        "expected_deliveries": sum(v["expected_deliveries"] for v in verifies),
        "deliveries": sum(v["deliveries"] for v in verifies),
        "lost": sum(v["lost"] for v in verifies),
        "duplicates": sum(v["duplicates"] for v in verifies),
        "errors": sum(v["errors"] for v in verifies),
        "subscribers": sum(row["subscribers"] for row in idle),
        "opened": sum(row["opened"] for row in idle),
    }
    report.tables.append(
        Table(
            "Idle subscribed connections (one subscription per socket)",
            [
                "server",
                "connections",
                "RSS MB at 0",
                "RSS MB at all",
                "KiB per connection",
                "vs raw",
                *(["vs Centrifugo"] if with_peer else []),
                "deliveries with all open",
                "RSS MB after them",
                "RSS MB after closing all",
                "after closing vs open",
                "refused, then retried",
                "delivered check",
            ],
            [
                [
                    row["target"],
                    row["opened"],
                    row["rss_mb_start"],
                    row["rss_mb_at_most"],
                    row["kib_per_idle_subscription"],
                    row["ratio_kib"],
                    *([row["ratio_kib_centrifugo"]] if with_peer else []),
                    f"{row['deliveries_then_closed']['deliveries']:,}",
                    row["rss_mb_after_deliveries"],
                    row["rss_mb_after_close"],
                    row["after_close_vs_open"],
                    row["refused_then_retried"],
                    f"{row['verify']['deliveries']:,}/{row['verify']['expected_deliveries']:,}",
                ]
                for row in idle
            ],
        )
    )
    report.tables.append(
        Table(
            "Most concurrent subscriptions held by one server process",
            ["server", "subscriptions per socket", "held", "RSS MB", "stopped by", "delivered"],
            [
                [
                    row["target"],
                    row["per_socket"],
                    row["held"],
                    row["steps"][-1]["rss_mb"] if row["steps"] else None,
                    row["stopped_by"],
                    f"{row['verify']['deliveries']:,}/{row['verify']['expected_deliveries']:,}",
                ]
                for row in ramps
            ],
        )
    )
    report.notes += [
        "RSS is the server process's resident memory (children included) read with "
        f"psutil {SETTLE_SECONDS:g} s after each step; KiB per connection is the "
        "least-squares slope over the steps.",
        f"Sockets belong to {users} signed-up users (several sockets per user).",
        "The ramp stops at its cap, at the first refused socket or subscription that "
        "does not become active, at its time bound, or when the server's RSS passes half "
        "the machine's memory; a ramp stopped by its cap is a lower bound.",
        "'delivered' sends one message per room at the end: every subscription held "
        "must receive it exactly once.",
    ]
    if with_peer:
        report.notes.append(
            f"{centrifugo.LABEL} runs with GOMAXPROCS={centrifugo.GO_MAX_PROCS}; its sockets "
            "connect with a JWT and subscribe to one channel each in its JSON protocol; "
            "'vs Centrifugo' is the Plop/Centrifugo ratio. Go's runtime returns freed "
            "memory to the system lazily, so its RSS after closing says little."
        )

    def memory(figure: Figure) -> None:
        axes = figure.add_subplot(1, 2, 1)
        for row in idle:
            axes.plot(
                [p[0] for p in row["points"]],
                [p[1] for p in row["points"]],
                marker="o",
                label=row["target"],
            )
        axes.set(xlabel="idle connections", ylabel="RSS MB", title="idle subscribed sockets")
        axes.legend(fontsize="small")
        ramp_axes = figure.add_subplot(1, 2, 2)
        for row in ramps:
            ramp_axes.plot(
                [step["subscriptions"] for step in row["steps"]],
                [step["rss_mb"] for step in row["steps"]],
                marker="o",
                label=f"{row['target']}, {row['per_socket']}/socket",
            )
        ramp_axes.set(xlabel="subscriptions", ylabel="RSS MB", title="ramp")
        ramp_axes.legend(fontsize="small")

    report.plots.append(Plot("rss", memory))
    return report
