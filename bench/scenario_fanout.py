"""fanout: N subscribers of messageAdded, on one room or spread over many rooms.

For each layout and subscriber count, on the raw baseline and on Plop in the same
run: open the subscribers (one socket each), then

- burst: every room gets ``messages`` messages as fast as the sender's answers come
  (one sequential sender per room); deliveries/s = frames received / (last receive -
  first send), with send-to-receive latency under that saturation;
- paced: ``paced_messages`` more per room at half the burst's rate, for the latency
  at a load the server keeps up with.

Every subscriber must get every message of its room exactly once. With ``--peer
centrifugo``, Centrifugo runs the same in the same run (``bench.centrifugo``: its
JSON protocol on the sockets, its HTTP API for the sends), and Plop's rows carry
their ratios to it beside those to the raw baseline.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from matplotlib.figure import Figure

from bench import centrifugo
from bench.common import (
    SEND_QUEUE_NOTE,
    Options,
    Sender,
    baseline_target,
    machine_busy_seconds,
    plop_target,
)
from bench.load import BUCKET_SECONDS, LoadPool, Plan, merge_rounds
from bench.report import Plot, Report, Table, latency_summary, ratio
from bench.targets import Population, Target

SUBSCRIBERS_PER_WORKER = 5_000
MIN_WAIT_SECONDS = 60.0
MAX_WAIT_SECONDS = 900.0
SLOW_CONSUMER_LOG = "closing a slow consumer"


def workers_for(subscribers: int, options: Options) -> int:
    return options.workers or max(1, math.ceil(subscribers / SUBSCRIBERS_PER_WORKER))


def wait_seconds(deliveries: int) -> float:
    """How long a round may take to deliver: generous, but bounded."""
    return min(MAX_WAIT_SECONDS, MIN_WAIT_SECONDS + deliveries / 1_000)


async def _round(
    target: Target,
    pool: LoadPool,
    sender: Sender,
    subscribers: int,
    count: int,
    interval: float | None,
) -> dict[str, Any]:
    await pool.all("round")
    cpu_before = target.server.cpu_seconds()
    busy_before = machine_busy_seconds()
    first_send = time.time()
    if interval is None:
        await sender.burst(count)
    else:
        await sender.paced(count, interval)
    sent_seconds = time.time() - first_send
    sent = count * len(sender.rooms)
    expected = {room: sender.last_seq[room] for room in sender.rooms}
    merged = merge_rounds(
        await pool.all("wait", {"expected": expected, "within": wait_seconds(subscribers * count)})
    )
    cpu = target.server.cpu_seconds() - cpu_before
    busy = machine_busy_seconds() - busy_before
    elapsed = time.time() - first_send
    span = (merged["last_receive"] - first_send) if merged["last_receive"] else 0.0
    deliveries = merged["deliveries"]
    return {
        "messages_per_room": count,
        "expected_deliveries": merged["subscribers"] * count,
        "deliveries": deliveries,
        "lost": merged["lost"],
        "duplicates": merged["duplicates"],
        "reordered": merged["reordered"],
        "beyond_expected": merged["beyond_expected"],
        "seconds": round(span, 3),
        "send_seconds": round(sent_seconds, 3),
        "messages_per_second": round(sent / sent_seconds, 1) if sent_seconds > 0 else 0.0,
        "deliveries_per_second": round(deliveries / span, 1) if span > 0 else 0.0,
        "server_cpu_us_per_delivery": round(cpu / deliveries * 1e6, 1) if deliveries else None,
        "load_cpu_seconds": round(merged["load_cpu_seconds"], 2),
        **machine_load(busy, cpu, merged["load_cpu_seconds"], elapsed),
        "mean_frame_bytes": round(merged["frame_bytes"] / deliveries, 1) if deliveries else 0,
        "closed_by_server": merged["closed_by_server"],
        "errors": merged["error_count"],
        "error_samples": merged["errors"],
        "timeline": _timeline(merged["buckets"], first_send),
        **latency_summary(merged["latencies"]),
    }


def machine_load(
    busy: float, server_cpu: float, load_cpu: float, elapsed: float
) -> dict[str, float | None]:
    """How busy the machine was during a round, as shares of all its cores: every
    process, the server, the load processes, and the rest (the services, and
    whatever else runs on the machine). A round whose load processes got little
    CPU while others took much measured the machine, not the server."""
    capacity = elapsed * (os.cpu_count() or 1)
    if capacity <= 0:
        return dict.fromkeys(
            (
                "machine_busy_share",
                "server_cpu_share",
                "load_cpu_share",
                "others_cpu_share",
                "load_average_1m",
            )
        )
    return {
        "machine_busy_share": round(busy / capacity, 3),
        "server_cpu_share": round(server_cpu / capacity, 3),
        "load_cpu_share": round(load_cpu / capacity, 3),
        "others_cpu_share": round(max(0.0, busy - server_cpu - load_cpu) / capacity, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _timeline(buckets: dict[int, int], start: float) -> list[tuple[float, float]]:
    """(seconds since the first send, deliveries/s) per bucket."""
    origin = start / BUCKET_SECONDS
    return [
        (round((bucket - origin) * BUCKET_SECONDS, 2), count / BUCKET_SECONDS)
        for bucket, count in sorted(buckets.items())
    ]


async def run_config(
    target: Target,
    population: Population,
    rooms: list[str],
    layout: str,
    subscribers: int,
    options: Options,
    last_seq: dict[str, int],
    senders: int = 1,
    rate: float = 0.0,
) -> dict[str, Any]:
    """Opens the subscribers, then a burst and a paced round; ``senders`` send
    concurrently into each room, and the paced round goes at ``rate`` messages/s per
    room (0: half the rate the burst reached)."""
    plans = []
    for index in range(subscribers):
        room = rooms[index % len(rooms)]
        plans.append(Plan(population.account_of(index).token, room, last_seq[room]))
    before = await target.subscriptions()
    pool = LoadPool(workers_for(subscribers, options))
    sender = Sender(target, population.accounts[0], rooms, last_seq, senders, population.accounts)
    slow_before = target.server.log_count(SLOW_CONSUMER_LOG)
    rss_before = target.server.rss_bytes()
    try:
        opened = await pool.open(target.ws_urls, plans, protocol=target.protocol)
        held, settled = await target.wait_subscriptions(before + opened["opened"])
        burst = await _round(target, pool, sender, subscribers, options.messages, None)
        # Half the rate the burst reached: a load the server keeps up with.
        per_message = burst["seconds"] / max(1, options.messages)
        interval = 1 / rate if rate else min(2.0, max(0.005, 2 * per_message))
        paced = await _round(target, pool, sender, subscribers, options.paced_messages, interval)
        rss_after = target.server.rss_bytes()
    finally:
        await pool.close()
        await sender.close()
        last_seq.update(sender.last_seq)
        await target.wait_no_subscriptions()
    return {
        "target": target.label,
        "layout": layout,
        "rooms": len(rooms),
        "subscribers": subscribers,
        "senders": senders,
        "opened": opened["opened"],
        "failed_sockets": opened["failed_sockets"],
        "open_seconds": round(opened["seconds"], 2),
        "open_errors": opened["errors"],
        "server_held": held,
        "settled": settled,
        "workers": pool.size,
        "paced_interval_seconds": round(interval, 4),
        "send_errors": len(sender.errors),
        "send_error_samples": sender.errors[:3],
        "seq_gaps": sender.seq_gaps,
        "slow_consumers_closed": target.server.log_count(SLOW_CONSUMER_LOG) - slow_before,
        "rss_mb_before": round(rss_before / 2**20, 1),
        "rss_mb_after": round(rss_after / 2**20, 1),
        "burst": burst,
        "paced": paced,
    }


def layouts(options: Options) -> list[tuple[str, int]]:
    """One room, then the subscribers spread over ``--rooms`` (unless that is 1)."""
    if options.rooms <= 1:
        return [("one room", 1)]
    return [("one room", 1), (f"{options.rooms} rooms", options.rooms)]


async def _run_target(target: Target, options: Options) -> list[dict[str, Any]]:
    users = max(1, min(options.users, max(options.subscribers)))
    spread = options.rooms
    population = await target.populate(users, 1 + spread)
    last_seq = dict.fromkeys(population.rooms, 0)
    configs = []
    for layout, count in layouts(options):
        rooms = population.rooms[:1] if count == 1 else population.rooms[1 : 1 + spread]
        for subscribers in options.subscribers:
            configs.append(
                await run_config(target, population, rooms, layout, subscribers, options, last_seq)
            )
    return configs


def _with_ratios(configs: list[dict[str, Any]], reference_label: str, prefix: str) -> None:
    """Each other config's ratios to the reference server's same layout and count:
    ``ratio_*`` to the raw baseline, ``ratio_centrifugo_*`` to Centrifugo."""
    references = {
        (config["layout"], config["subscribers"]): config
        for config in configs
        if config["target"] == reference_label
    }
    for config in configs:
        reference = references.get((config["layout"], config["subscribers"]))
        if reference is None:
            continue
        for phase in ("burst", "paced"):
            mine, theirs = config[phase], reference[phase]
            mine[f"{prefix}deliveries_per_second"] = ratio(
                mine["deliveries_per_second"], theirs["deliveries_per_second"]
            )
            mine[f"{prefix}p50"] = ratio(mine["p50_ms"], theirs["p50_ms"])
            mine[f"{prefix}p99"] = ratio(mine["p99_ms"], theirs["p99_ms"])
            mine[f"{prefix}cpu_per_delivery"] = ratio(
                mine["server_cpu_us_per_delivery"] or 0.0,
                theirs["server_cpu_us_per_delivery"] or 0.0,
            )


async def run(options: Options) -> Report:
    configs: list[dict[str, Any]] = []
    async with baseline_target(options) as baseline:
        configs += await _run_target(baseline, options)
    if "centrifugo" in options.peers:
        name = f"{options.scenario}-{options.run_id}-centrifugo"
        async with centrifugo.centrifugo_target(name) as peer:
            configs += await _run_target(peer, options)
    for backend in options.backends:
        async with plop_target(options, backend) as plop:
            configs += await _run_target(plop, options)
    _with_ratios(configs, "raw FastAPI", "ratio_")
    _with_ratios(configs, centrifugo.LABEL, "ratio_centrifugo_")
    with_peer = "centrifugo" in options.peers

    report = Report(
        scenario="fanout",
        title="Fan-out: messageAdded to N subscribers",
        argv=options.argv,
        parameters={
            "subscribers": options.subscribers,
            "spread_rooms": options.rooms,
            "burst_messages_per_room": options.messages,
            "paced_messages_per_room": options.paced_messages,
            "users": options.users,
            "backends": options.backends,
            "peers": options.peers,
            "smoke": options.smoke,
        },
        data={"configs": configs},
    )
    phases = [config[phase] for config in configs for phase in ("burst", "paced")]
    report.checks = {
        "expected_deliveries": sum(phase["expected_deliveries"] for phase in phases),
        "deliveries": sum(phase["deliveries"] for phase in phases),
        "lost": sum(phase["lost"] for phase in phases),
        "duplicates": max((phase["duplicates"] for phase in phases), default=0),
        "reordered": max((phase["reordered"] for phase in phases), default=0),
        "subscribers": sum(config["subscribers"] for config in configs),
        "opened": sum(config["opened"] for config in configs),
        "send_errors": sum(config["send_errors"] for config in configs),
        "seq_gaps": sum(config["seq_gaps"] for config in configs),
        "errors": sum(phase["errors"] for phase in phases),
    }
    headers = [
        "server",
        "layout",
        "subscribers",
        "deliveries",
        "deliveries/s",
        "vs raw",
        "p50 ms",
        "p99 ms",
        "p50 vs raw",
        "p99 vs raw",
        "server CPU µs/delivery",
        "CPU vs raw",
        *(["vs Centrifugo", "p99 vs Centrifugo", "CPU vs Centrifugo"] if with_peer else []),
        "lost",
        "dup",
    ]
    for phase, title in (
        ("burst", "Burst: deliveries/s at saturation (ratios: to raw FastAPI, same run)"),
        ("paced", "Paced at half the burst rate: send-to-receive latency"),
    ):
        report.tables.append(
            Table(
                title,
                headers,
                [
                    [
                        config["target"],
                        config["layout"],
                        config["subscribers"],
                        config[phase]["deliveries"],
                        config[phase]["deliveries_per_second"],
                        config[phase].get("ratio_deliveries_per_second"),
                        config[phase]["p50_ms"],
                        config[phase]["p99_ms"],
                        config[phase].get("ratio_p50"),
                        config[phase].get("ratio_p99"),
                        config[phase]["server_cpu_us_per_delivery"],
                        config[phase].get("ratio_cpu_per_delivery"),
                        *(
                            [
                                config[phase].get("ratio_centrifugo_deliveries_per_second"),
                                config[phase].get("ratio_centrifugo_p99"),
                                config[phase].get("ratio_centrifugo_cpu_per_delivery"),
                            ]
                            if with_peer
                            else []
                        ),
                        config[phase]["lost"],
                        config[phase]["duplicates"],
                    ]
                    for config in configs
                ],
            )
        )
    report.tables.append(
        Table(
            "Set-up and server state",
            [
                "server",
                "layout",
                "subscribers",
                "opened",
                "open s",
                "load workers",
                "paced interval s",
                "frame bytes",
                "RSS MB before",
                "RSS MB after",
                "slow consumers closed",
            ],
            [
                [
                    config["target"],
                    config["layout"],
                    config["subscribers"],
                    config["opened"],
                    config["open_seconds"],
                    config["workers"],
                    config["paced_interval_seconds"],
                    config["burst"]["mean_frame_bytes"],
                    config["rss_mb_before"],
                    config["rss_mb_after"],
                    config["slow_consumers_closed"],
                ]
                for config in configs
            ],
        )
    )
    report.tables.append(
        Table(
            "Machine load per round (shares of all cores; others: services and other work)",
            [
                "server",
                "layout",
                "subscribers",
                "round",
                "machine busy",
                "server",
                "load processes",
                "others",
                "load average 1 min",
            ],
            [
                [
                    config["target"],
                    config["layout"],
                    config["subscribers"],
                    phase,
                    config[phase]["machine_busy_share"],
                    config[phase]["server_cpu_share"],
                    config[phase]["load_cpu_share"],
                    config[phase]["others_cpu_share"],
                    config[phase]["load_average_1m"],
                ]
                for config in configs
                for phase in ("burst", "paced")
            ],
        )
    )
    report.notes += [
        f"Subscribers are spread over {options.users} signed-up users (sign-up hashes "
        "with argon2, so thousands of users would take minutes): a user holds several "
        "sockets, one subscription each.",
        "One sender per room, sequential (the next send waits for the previous answer); "
        "with many rooms the rooms' senders run concurrently.",
        "deliveries/s = frames received / (last receive - first send). Latency = "
        "receive time - the send time written in the message text (same machine clock).",
        "The raw FastAPI baseline speaks enough graphql-transport-ws for the same "
        "load generator, encodes each message's payload once and sends the same `next` "
        "frame through a per-socket queue and writer task; it stores nothing and checks "
        "nothing, so it is the ceiling of the WebSocket stack on this machine.",
        "Server, baseline and load run on the same machine: the load processes share "
        "its cores with the server; server CPU per delivery is the server process's own "
        "CPU time divided by its deliveries.",
        SEND_QUEUE_NOTE,
    ]
    if with_peer:
        report.notes += [
            f"{centrifugo.LABEL} (built with go install, GOMAXPROCS={centrifugo.GO_MAX_PROCS} "
            "as Plop's one worker) gets the same load from the same load processes: each "
            "socket connects with a JWT and subscribes to the room's channel in its JSON "
            "protocol; each message is the same JSON body, published through its HTTP API "
            "(/api/publish) by the same sequential senders; it stores nothing (no history), "
            "as the raw baseline. 'vs Centrifugo' columns are Plop/Centrifugo ratios."
        ]

    def burst(figure: Figure) -> None:
        for position, (layout, _) in enumerate(layouts(options), start=1):
            axes = figure.add_subplot(1, 2, position)
            for label in dict.fromkeys(config["target"] for config in configs):
                mine = [c for c in configs if c["target"] == label and c["layout"] == layout]
                axes.plot(
                    [c["subscribers"] for c in mine],
                    [c["burst"]["deliveries_per_second"] for c in mine],
                    marker="o",
                    label=label,
                )
            axes.set(xlabel="subscribers", ylabel="deliveries/s", title=layout)
            axes.set_ylim(bottom=0)
            axes.legend(fontsize="small")

    def latency(figure: Figure) -> None:
        axes = figure.add_subplot(1, 1, 1)
        labels = [f"{c['target']}\n{c['layout']}, {c['subscribers']:,}" for c in configs]
        positions = range(len(configs))
        axes.bar(
            [p - 0.2 for p in positions], [c["paced"]["p50_ms"] for c in configs], 0.4, label="p50"
        )
        axes.bar(
            [p + 0.2 for p in positions], [c["paced"]["p99_ms"] for c in configs], 0.4, label="p99"
        )
        axes.set_xticks(list(positions), labels, fontsize="x-small", rotation=60, ha="right")
        axes.set(ylabel="ms", title="send-to-receive latency, paced")
        axes.legend(fontsize="small")

    def timeline(figure: Figure) -> None:
        axes = figure.add_subplot(1, 1, 1)
        largest = max(config["subscribers"] for config in configs)
        for config in configs:
            if config["subscribers"] == largest:
                points = config["burst"]["timeline"]
                axes.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    label=f"{config['target']}, {config['layout']}",
                )
        axes.set(
            xlabel="seconds since the first send",
            ylabel="deliveries/s",
            title=f"burst, {largest:,} subscribers",
        )
        axes.legend(fontsize="small")

    report.plots += [
        Plot("deliveries", burst),
        Plot("latency", latency),
        Plot("timeline", timeline),
    ]
    return report
