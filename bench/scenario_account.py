"""account: one events(since) subscription per socket against one messageAdded per room.

The same population on the same Plop process, one layout after the other
(``bench.account_layout``): ``subscribers`` sockets of ``users`` followers, each
follower in ``per_socket`` of ``rooms`` group rooms, and a sender in every room.

- account: each socket runs one ``events`` subscription, which carries every room
  of its account;
- rooms: each socket runs one ``messageAdded`` subscription per room of its account
  (within the per-socket cap).

For each layout: a warm-up message per room (each stream's first message of a room
reads the room from the store), then a burst of ``messages`` per room as fast as the
senders' answers come (deliveries/s, server CPU per delivery) and ``paced_messages``
per room at half the burst's rate (send-to-receive latency). Every socket must get
every message of each of its rooms exactly once and in seq order per room, and none
of a room it does not follow: the run fails otherwise. The account row's ratios are
to the rooms row of the same run.

Before both, on the same process fresh from its set-up (``bench.account_memory``):
the memory per idle socket, per socket with one messageAdded, and per socket on one
events subscription of an account in one room and of one in ``followed_rooms``
rooms, hence the extra per followed room.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from matplotlib.figure import Figure

from bench import account_layout, account_memory
from bench.account_layout import AccountLayout
from bench.account_memory import idle_cpu_percent
from bench.common import SEND_QUEUE_NOTE, Options, Sender, plop_target
from bench.load import BUCKET_SECONDS, LoadPool, Stream, merge_rounds
from bench.report import Plot, Report, Table, latency_summary, ratio
from bench.targets import Target

SOCKETS_PER_WORKER = 5_000
OPEN_ATTEMPTS = 5
MIN_WAIT_SECONDS = 60.0
MAX_WAIT_SECONDS = 900.0
SLOW_CONSUMER_LOG = "closing a slow consumer"
# Sends in flight at once over all the rooms. Each message costs the server its
# deliveries to every socket of the room: one closed-loop sender per room would queue
# each send behind the deliveries of hundreds of others, past the client's timeout,
# on the layout that costs more per delivery. Both layouts send alike.
SENDS_IN_FLIGHT = 32
LAYOUTS: list[tuple[str, Stream]] = [
    ("events, one per socket", "account"),
    ("messageAdded, one per room", "rooms"),
]


def _wait_seconds(deliveries: int) -> float:
    """How long a round may take to deliver: generous, but bounded."""
    return min(MAX_WAIT_SECONDS, MIN_WAIT_SECONDS + deliveries / 500)


def _timeline(buckets: dict[int, int], start: float) -> list[tuple[float, float]]:
    """(seconds since the first send, deliveries/s) per bucket."""
    origin = start / BUCKET_SECONDS
    return [
        (round((bucket - origin) * BUCKET_SECONDS, 2), count / BUCKET_SECONDS)
        for bucket, count in sorted(buckets.items())
    ]


async def _send(sender: Sender, count: int, interval: float) -> None:
    """``count`` messages into every room, one sequential sender per room, each room's
    next message due ``interval`` s after the one before (0: at once), at most
    ``SENDS_IN_FLIGHT`` sends in flight over all the rooms."""
    gate = asyncio.Semaphore(SENDS_IN_FLIGHT)
    started = time.monotonic()

    async def lane(room: str) -> None:
        for index in range(count):
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with gate:
                await sender.send_one(room)

    await asyncio.gather(*(lane(room) for room in sender.rooms))


async def _round(
    target: Target, pool: LoadPool, sender: Sender, pairs: int, count: int, interval: float
) -> dict[str, Any]:
    """``count`` messages into every room (a burst: ``interval`` 0, or one every
    ``interval`` s per room); what was delivered, how fast, at what latency and server
    CPU."""
    await pool.all("round")
    cpu_before = target.server.cpu_seconds()
    first_send = time.time()
    await _send(sender, count, interval)
    send_seconds = time.time() - first_send
    expected = dict(sender.last_seq)
    merged = merge_rounds(
        await pool.all("wait", {"expected": expected, "within": _wait_seconds(pairs * count)})
    )
    cpu = target.server.cpu_seconds() - cpu_before
    span = (merged["last_receive"] - first_send) if merged["last_receive"] else 0.0
    deliveries = merged["deliveries"]
    return {
        "messages_per_room": count,
        "expected_deliveries": pairs * count,
        "deliveries": deliveries,
        "lost": merged["lost"],
        "duplicates": merged["duplicates"],
        "reordered": merged["reordered"],
        "beyond_expected": merged["beyond_expected"],
        "other_events": merged["other_events"],
        "seconds": round(span, 3),
        "send_seconds": round(send_seconds, 3),
        "deliveries_per_second": round(deliveries / span, 1) if span > 0 else 0.0,
        "server_cpu_us_per_delivery": round(cpu / deliveries * 1e6, 1) if deliveries else None,
        "load_cpu_seconds": round(merged["load_cpu_seconds"], 2),
        "mean_frame_bytes": round(merged["frame_bytes"] / deliveries, 1) if deliveries else 0,
        "closed_by_server": merged["closed_by_server"],
        "errors": merged["error_count"],
        "error_samples": merged["errors"],
        "timeline": _timeline(merged["buckets"], first_send),
        **latency_summary(merged["latencies"]),
    }


async def _run_layout(
    target: Target,
    layout: AccountLayout,
    name: str,
    stream: Stream,
    options: Options,
    last_seq: dict[str, int],
) -> dict[str, Any]:
    """Opens the layout's sockets, then a warm-up, a burst and a paced round."""
    sockets = options.subscribers[0]
    plans = layout.plans(sockets, last_seq)
    per_socket = len(plans) // sockets
    # The server counts one events subscription per socket, one messageAdded per room.
    subscriptions = sockets if stream == "account" else len(plans)
    before = await target.subscriptions()
    pool = LoadPool(options.workers or max(1, math.ceil(sockets / SOCKETS_PER_WORKER)))
    sender = Sender(target, layout.sender, layout.rooms, last_seq)
    slow_before = target.server.log_count(SLOW_CONSUMER_LOG)
    try:
        opened = await pool.open(
            target.ws_urls, plans, per_socket=per_socket, attempts=OPEN_ATTEMPTS, stream=stream
        )
        held, settled = await target.wait_subscriptions(before + subscriptions)
        idle_cpu = await idle_cpu_percent(target, options)
        # Each message of a room is due once on each (socket, room) pair of the room.
        pairs = len(plans)
        warm_up = await _round(target, pool, sender, pairs, 1, 0.0)
        burst = await _round(target, pool, sender, pairs, options.messages, 0.0)
        # Half the rate the burst reached: a load the server keeps up with.
        interval = max(0.005, 2 * burst["seconds"] / max(1, options.messages))
        paced = await _round(target, pool, sender, pairs, options.paced_messages, interval)
        rss_after = target.server.rss_bytes()
    finally:
        await pool.close()
        await sender.close()
        last_seq.update(sender.last_seq)
        await target.wait_no_subscriptions()
    return {
        "target": target.label,
        "layout": name,
        "stream": stream,
        "sockets": sockets,
        "rooms": len(layout.rooms),
        "followers": len(layout.followers),
        "rooms_per_socket": per_socket,
        # How many sockets each message reaches: one figure if every room holds as many.
        "sockets_per_room": sorted(set(layout.sockets_in(sockets).values())),
        "pairs": len(plans),
        "opened": opened["opened"],
        "subscriptions": subscriptions,
        "failed_sockets": opened["failed_sockets"],
        "open_seconds": round(opened["seconds"], 2),
        "open_errors": opened["errors"],
        "server_held": held - before,
        "settled": settled,
        "workers": pool.size,
        "paced_interval_seconds": round(interval, 4),
        "send_errors": len(sender.errors),
        "send_error_samples": sender.errors[:3],
        "seq_gaps": sender.seq_gaps,
        "slow_consumers_closed": target.server.log_count(SLOW_CONSUMER_LOG) - slow_before,
        "rss_mb_after": round(rss_after / 2**20, 1),
        "idle_cpu_percent": idle_cpu,
        "warm_up": warm_up,
        "burst": burst,
        "paced": paced,
    }


def _with_ratios(rows: list[dict[str, Any]]) -> None:
    """The account row's figures over the rooms row's, per backend and phase."""
    rooms = {row["target"]: row for row in rows if row["stream"] == "rooms"}
    for row in rows:
        reference = rooms.get(row["target"])
        if row["stream"] != "account" or reference is None:
            continue
        for phase in ("burst", "paced"):
            mine, theirs = row[phase], reference[phase]
            mine["ratio_deliveries_per_second"] = ratio(
                mine["deliveries_per_second"], theirs["deliveries_per_second"]
            )
            mine["ratio_p50"] = ratio(mine["p50_ms"], theirs["p50_ms"])
            mine["ratio_p99"] = ratio(mine["p99_ms"], theirs["p99_ms"])
            mine["ratio_cpu_per_delivery"] = ratio(
                mine["server_cpu_us_per_delivery"] or 0.0,
                theirs["server_cpu_us_per_delivery"] or 0.0,
            )


def _checks(rows: list[dict[str, Any]], memories: list[dict[str, Any]]) -> dict[str, Any]:
    phases = [row[phase] for row in rows for phase in ("warm_up", "burst", "paced")]
    verifies = [memory["verify"] for memory in memories]
    books = phases + verifies
    other_events = sum(sum(books_of["other_events"].values()) for books_of in books)
    return {
        "expected_deliveries": sum(b["expected_deliveries"] for b in books),
        "deliveries": sum(b["deliveries"] for b in books),
        "lost": sum(b["lost"] for b in books),
        # Totals over a layout's sockets, kept from round to round: the largest.
        "duplicates": max((b["duplicates"] for b in books), default=0),
        "reordered": max((b["reordered"] for b in books), default=0),
        "beyond_expected": sum(b.get("beyond_expected", 0) for b in books),
        "errors": sum(b["errors"] for b in books) + other_events,
        "subscribers": sum(row["pairs"] for row in rows),
        "opened": sum(row["opened"] for row in rows),
        "failed": sum(row["failed_sockets"] for row in rows)
        + sum(v["failed_sockets"] for v in verifies),
        "send_errors": sum(row["send_errors"] for row in rows),
        "seq_gaps": sum(row["seq_gaps"] for row in rows),
        "layouts": sorted({row["stream"] for row in rows}),
    }


async def run(options: Options) -> Report:
    rows: list[dict[str, Any]] = []
    memories: list[dict[str, Any]] = []
    followers = max(1, min(options.users, options.subscribers[0]))
    per_user = max(1, min(options.per_socket, options.rooms))
    for backend in options.backends:
        async with plop_target(options, backend) as plop:
            layout = await account_layout.build(plop, followers, options.rooms, per_user, spare=2)
            narrow, wide = layout.spare
            memories.append(await account_memory.measure(plop, narrow, wide, options))
            last_seq = dict.fromkeys(layout.rooms, 0)
            for name, stream in LAYOUTS:
                rows.append(await _run_layout(plop, layout, name, stream, options, last_seq))
    _with_ratios(rows)

    report = Report(
        scenario="account",
        title="Account stream: one events subscription per socket against messageAdded per room",
        argv=options.argv,
        parameters={
            "sockets": options.subscribers[0],
            "rooms": options.rooms,
            "followers": followers,
            "rooms_per_follower": per_user,
            "burst_messages_per_room": options.messages,
            "paced_messages_per_room": options.paced_messages,
            "memory_sockets_per_kind": options.memory_sockets,
            "followed_rooms": options.followed_rooms,
            "backends": options.backends,
            "smoke": options.smoke,
        },
        data={"rows": rows, "memory": memories},
    )
    report.checks = _checks(rows, memories)
    report.checks["every_message_once_in_order"] = report.checks["deliveries"] == report.checks[
        "expected_deliveries"
    ] and not any(
        report.checks[name]
        for name in ("lost", "duplicates", "reordered", "beyond_expected", "errors", "failed")
    )
    _tables(report, rows, memories)
    report.notes += _notes(options, followers, per_user)
    report.plots += _plots(rows, memories)
    return report


def _tables(report: Report, rows: list[dict[str, Any]], memories: list[dict[str, Any]]) -> None:
    headers = [
        "server",
        "layout",
        "sockets",
        "subscriptions",
        "deliveries",
        "deliveries/s",
        "vs messageAdded",
        "p50 ms",
        "p99 ms",
        "p50 vs messageAdded",
        "p99 vs messageAdded",
        "server CPU µs/delivery",
        "CPU vs messageAdded",
        "frame bytes",
        "lost",
        "dup",
        "reordered",
    ]
    for phase, title in (
        ("burst", "Burst: deliveries/s at saturation (ratios: events over messageAdded, same run)"),
        ("paced", "Paced at half the burst rate: send-to-receive latency"),
    ):
        report.tables.append(
            Table(
                title,
                headers,
                [
                    [
                        row["target"],
                        row["layout"],
                        row["sockets"],
                        row["subscriptions"],
                        row[phase]["deliveries"],
                        row[phase]["deliveries_per_second"],
                        row[phase].get("ratio_deliveries_per_second"),
                        row[phase]["p50_ms"],
                        row[phase]["p99_ms"],
                        row[phase].get("ratio_p50"),
                        row[phase].get("ratio_p99"),
                        row[phase]["server_cpu_us_per_delivery"],
                        row[phase].get("ratio_cpu_per_delivery"),
                        row[phase]["mean_frame_bytes"],
                        row[phase]["lost"],
                        row[phase]["duplicates"],
                        row[phase]["reordered"],
                    ]
                    for row in rows
                ],
            )
        )
    report.tables.append(
        Table(
            "Set-up, and the server's CPU with every socket open and nothing sent",
            ["server", "layout", "sockets", "subscriptions", "open s", "idle CPU %", "RSS MB"],
            [
                [
                    row["target"],
                    row["layout"],
                    row["sockets"],
                    row["subscriptions"],
                    row["open_seconds"],
                    row["idle_cpu_percent"],
                    row["rss_mb_after"],
                ]
                for row in rows
            ],
        )
    )
    report.tables.append(
        Table(
            "Memory per socket (RSS slope over the sockets of each kind, all kept open)",
            ["server", "socket", "rooms followed", "sockets", "KiB per socket", "RSS MB points"],
            [
                [
                    memory["target"],
                    kind["kind"],
                    kind["followed_rooms"],
                    kind["sockets"],
                    kind["kib_per_socket"],
                    " ".join(f"{count}:{mb}" for count, mb in kind["points"]),
                ]
                for memory in memories
                for kind in memory["kinds"]
            ],
        )
    )
    report.tables.append(
        Table(
            "One socket following many rooms on one events subscription",
            [
                "server",
                "rooms",
                "sockets",
                "KiB per socket",
                "bytes per followed room",
                "idle CPU % with every kind open",
                "delivered check",
            ],
            [
                [
                    memory["target"],
                    memory["followed_rooms"],
                    memory["wide_sockets"],
                    memory["kib_per_socket_following"],
                    memory["bytes_per_followed_room"],
                    memory["idle_cpu_percent"],
                    f"{memory['verify']['deliveries']:,}/"
                    f"{memory['verify']['expected_deliveries']:,}",
                ]
                for memory in memories
            ],
        )
    )


def _notes(options: Options, followers: int, per_user: int) -> list[str]:
    return [
        f"{options.subscribers[0]:,} sockets belong to {followers:,} followers (socket i to "
        f"follower i mod {followers:,}); each follower is in {per_user} of the "
        f"{options.rooms:,} group rooms, every room holding as many followers; one more "
        "user owns and sends into every room and follows none.",
        "Both layouts run on the same server process, one after the other, with the same "
        "sockets, users and rooms: 'events' is one events(since: null) subscription per "
        "socket; 'messageAdded' is one subscription per room of the socket's account, "
        "on the same socket.",
        "Each layout first gets one warm-up message per room (not in the figures; in the "
        "books): an account stream reads each room's messages from the store at its first "
        "message there.",
        f"One sequential sender per room, at most {SENDS_IN_FLIGHT} sends in flight over "
        "all the rooms (in the burst as in the paced round, where each layout is paced at "
        "half its own burst rate). "
        "deliveries/s = messages received / (last receive - first send); latency = "
        "receive time - the send time written in the message text (same machine clock). "
        "Server CPU per delivery is the Plop process's own CPU time over its deliveries.",
        "Books: every socket must receive every message of each of its rooms once and in "
        "seq order per room, nothing from before it subscribed and nothing of a room its "
        "account is not in; any account event other than a message is counted as an error "
        "(none is caused during a run).",
        "Memory: measured first, on the Plop process fresh from its set-up; per kind, the "
        "sockets open in steps (all of one kind stay open while the next opens), the "
        "server's RSS read after each settles; "
        "KiB per socket is the least-squares slope. The extra per followed room is the "
        "difference between the two events kinds over the rooms between them. The wide "
        "account has an eighth as many sockets as the other kinds: each of its streams "
        "re-reads the account's rooms every PLOP_MEMBERSHIP_CHECK_SECONDS.",
        "Idle CPU: the server's CPU in % of one core over 10 s with the sockets open and "
        "nothing sent (one period of the account streams' re-reading of their rooms).",
        SEND_QUEUE_NOTE,
    ]


def _plots(rows: list[dict[str, Any]], memories: list[dict[str, Any]]) -> list[Plot]:
    def timeline(figure: Figure) -> None:
        axes = figure.add_subplot(1, 1, 1)
        for row in rows:
            points = row["burst"]["timeline"]
            axes.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                label=f"{row['target']}, {row['layout']}",
            )
        axes.set(
            xlabel="seconds since the first send", ylabel="deliveries/s", title="burst deliveries"
        )
        axes.legend(fontsize="small")

    def memory(figure: Figure) -> None:
        axes = figure.add_subplot(1, 1, 1)
        for each in memories:
            for kind in each["kinds"]:
                axes.plot(
                    [p[0] for p in kind["points"]],
                    [p[1] for p in kind["points"]],
                    marker="o",
                    label=f"{each['target']}, {kind['kind']}",
                )
        axes.set(xlabel="sockets of the kind", ylabel="RSS MB", title="memory per socket")
        axes.legend(fontsize="x-small")

    return [Plot("timeline", timeline), Plot("memory", memory)]
