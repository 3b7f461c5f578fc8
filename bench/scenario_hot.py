"""hot: C concurrent senders into one room, beside the same C senders over C rooms.

For each backend and each level C (``--senders``), on the same server in the same
run: C senders send into ONE room, each waiting for its answer before its next send
(a closed loop), for ``--seconds``; then the same C senders send as long, each into
a room of its own (the spread layout, as ``send`` measures it). The one room's
stored/s and p50/p99 send latency are taken as ratios to the spread layout's.

The books of each layout: a subscriber on each instance follows every room sent to
(from the room's last seq), and must get the seqs sent exactly once and in order
(per room for the spread layout); a room's answers must be those seqs, each once,
and each sender's answers must rise. A seq missing from the answers is counted only
where no send failed (a send can fail after its message was stored). UNAVAILABLE
answers and other errors are figures (the target is no UNAVAILABLE), not books.

Then, on the backend with the most instances (2 in ``plop bench all``): the fan-out
of a hot room, with ``scenario_fanout``'s rounds: ``--subscribers`` subscribers of
one room, spread over the instances, fed by ``HOT_FANOUT_SENDERS`` concurrent
senders, the paced round at ``--rate`` messages/s, beside the same subscribers of
another room fed by one sender; every message must reach every subscriber once, in
order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from matplotlib.figure import Figure

from bench import scenario_fanout
from bench.common import Options, Sender, parse_backend, plop_target
from bench.load import LoadPool, Plan, merge_rounds
from bench.report import Plot, Report, Table, ratio, summed
from bench.scenario_send import closed_loop
from bench.targets import Population, Target

ONE_ROOM = "one room"
SPREAD = "spread"
# One message per sender before a level's clock starts: each sender's connection is
# open and its room's caches are warm (more would stall the hot room for seconds).
WARMUP_MESSAGES = 1
# Enough concurrent senders to offer 500 messages/s into one room at a 64 ms round trip.
HOT_FANOUT_SENDERS = 32
# The targets (``bench/summary.py``): the one room's stored/s at least this share of
# the spread layout's at every C, by instances; its p99 at most this multiple.
MIN_STORED_RATIO = {1: 0.8, 2: 0.6}
MAX_P99_RATIO = 2.0


def _subscriber_plans(
    population: Population, rooms: list[str], instances: int, last_seq: dict[str, int]
) -> list[Plan]:
    """One subscriber per room per instance: one load worker opens the sockets in this
    order and gives each the next instance's URL in turn."""
    return [
        Plan(population.account_of(number).token, room, last_seq[room])
        for room in rooms
        for number in range(instances)
    ]


async def _layout(
    target: Target,
    population: Population,
    layout: str,
    concurrency: int,
    rooms: list[str],
    options: Options,
    last_seq: dict[str, int],
) -> dict[str, Any]:
    """C senders into ``rooms`` (one room, or one each), with their subscribers."""
    instances = len(target.server.ports)
    if layout == ONE_ROOM:
        senders = [
            Sender(
                target, population.accounts[0], rooms, last_seq, concurrency, population.accounts
            )
        ]
    else:
        senders = [
            Sender(target, population.account_of(index), [room], last_seq)
            for index, room in enumerate(rooms)
        ]
    bases = {room: last_seq[room] for room in rooms}
    before = await target.subscriptions()
    pool = LoadPool(1)
    try:
        opened = await pool.open(
            target.ws_urls, _subscriber_plans(population, rooms, instances, last_seq)
        )
        await target.wait_subscriptions(before + opened["opened"])
        await pool.all("round")
        figures = await closed_loop(target, senders, options.duration, None, WARMUP_MESSAGES)
        expected = {room: ledger.highest for s in senders for room, ledger in s.ledgers.items()}
        stored = sum(expected[room] - bases[room] for room in rooms)
        within = scenario_fanout.wait_seconds(stored * instances)
        merged = merge_rounds(await pool.all("wait", {"expected": expected, "within": within}))
    finally:
        await asyncio.gather(*(sender.close() for sender in senders))
        for sender in senders:
            last_seq.update(sender.last_seq)
        await pool.close()
        await target.wait_no_subscriptions()
    answers = [ledger.check() for sender in senders for ledger in sender.ledgers.values()]
    failed = sum(check["errors"] for check in answers)
    gaps = sum(check["seq_gaps"] for check in answers)
    return {
        "target": target.label,
        "instances": instances,
        "layout": layout,
        "concurrency": concurrency,
        "rooms": len(rooms),
        **figures,
        "other_errors": figures["errors"] - figures["unavailable"],
        "answer_duplicates": sum(check["duplicates"] for check in answers),
        "answer_gaps": gaps,
        # A failed send may have stored its message: only gaps beyond those count.
        "unexplained_gaps": max(0, gaps - failed),
        "out_of_order": sum(check["out_of_order"] for check in answers),
        "subscribers": len(rooms) * instances,
        "opened": opened["opened"],
        "expected_deliveries": stored * instances,
        "deliveries": merged["deliveries"],
        "lost": merged["lost"],
        "duplicates": merged["duplicates"],
        "reordered": merged["reordered"],
        "beyond_expected": merged["beyond_expected"],
        "subscriber_errors": merged["error_count"] + opened["failed_sockets"],
        "subscriber_error_samples": [*opened["errors"], *merged["errors"]][:3],
    }


def _with_ratios(rows: list[dict[str, Any]]) -> None:
    """Each one-room row's ratios to the spread row of its server and C."""
    spread = {(row["target"], row["concurrency"]): row for row in rows if row["layout"] == SPREAD}
    for row in rows:
        reference = spread.get((row["target"], row["concurrency"]))
        if row["layout"] != ONE_ROOM or reference is None:
            continue
        row["ratio_per_second"] = ratio(row["per_second"], reference["per_second"])
        row["ratio_p50"] = ratio(row["p50_ms"], reference["p50_ms"])
        row["ratio_p99"] = ratio(row["p99_ms"], reference["p99_ms"])


async def _run_backend(
    options: Options, backend: str, with_fanout: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    widest = max(options.concurrency)
    fanout_rooms = 2 if with_fanout else 0
    async with plop_target(options, backend) as target:
        users = max(1, min(options.users, widest))
        population = await target.populate(users, 1 + widest + fanout_rooms)
        last_seq = dict.fromkeys(population.rooms, 0)
        hot, spread = population.rooms[:1], population.rooms[1 : 1 + widest]
        rows = []
        for concurrency in options.concurrency:
            for layout, rooms in ((ONE_ROOM, hot), (SPREAD, spread[:concurrency])):
                rows.append(
                    await _layout(target, population, layout, concurrency, rooms, options, last_seq)
                )
        configs = []
        if with_fanout:
            single, crowded = population.rooms[-2:]
            for senders, room, rate in (
                (1, single, 0.0),
                (HOT_FANOUT_SENDERS, crowded, options.rate),
            ):
                for subscribers in options.subscribers:
                    configs.append(
                        await scenario_fanout.run_config(
                            target,
                            population,
                            [room],
                            ONE_ROOM,
                            subscribers,
                            options,
                            last_seq,
                            senders,
                            rate,
                        )
                    )
    return rows, configs


def fanout_backend(backends: list[str]) -> str:
    """The backend the hot room's fan-out runs on: the first with the most instances."""
    return max(backends, key=lambda backend: parse_backend(backend)[1])


def _checks(rows: list[dict[str, Any]], configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's books (``bench.cli.passed``); UNAVAILABLE and other errors are figures."""
    phases = [config[phase] for config in configs for phase in ("burst", "paced")]
    books = summed(rows, "lost", "duplicates", "reordered", "out_of_order", "subscriber_errors")
    return {
        "requests": sum(row["requests"] for row in rows),
        "stored": sum(row["answered"] for row in rows),
        "unavailable": sum(row["unavailable"] for row in rows),
        "other_errors": sum(row["other_errors"] for row in rows),
        "subscribers": sum(row["subscribers"] for row in rows)
        + sum(config["subscribers"] for config in configs),
        "opened": sum(row["opened"] for row in rows) + sum(config["opened"] for config in configs),
        "expected_deliveries": sum(row["expected_deliveries"] for row in rows)
        + sum(phase["expected_deliveries"] for phase in phases),
        "deliveries": sum(row["deliveries"] for row in rows)
        + sum(phase["deliveries"] for phase in phases),
        "lost": books["lost"] + sum(phase["lost"] for phase in phases),
        "duplicates": books["duplicates"]
        + sum(row["answer_duplicates"] for row in rows)
        + max((phase["duplicates"] for phase in phases), default=0),
        "reordered": books["reordered"] + max((phase["reordered"] for phase in phases), default=0),
        "seq_gaps": sum(row["unexplained_gaps"] for row in rows)
        + sum(config["seq_gaps"] for config in configs),
        "out_of_order": books["out_of_order"],
        "failed": books["subscriber_errors"] + sum(phase["errors"] for phase in phases),
        "send_errors": sum(config["send_errors"] for config in configs),
    }


async def run(options: Options) -> Report:
    rows: list[dict[str, Any]] = []
    configs: list[dict[str, Any]] = []
    widest = fanout_backend(options.backends)
    for backend in options.backends:
        measured, fanned = await _run_backend(options, backend, backend == widest)
        rows += measured
        configs += fanned
    _with_ratios(rows)

    report = Report(
        scenario="hot",
        title="Hot room: C senders in one room beside C rooms",
        argv=options.argv,
        parameters={
            "senders": options.concurrency,
            "seconds_per_level": options.duration,
            "backends": options.backends,
            "users": options.users,
            "fanout_backend": widest,
            "fanout_subscribers": options.subscribers,
            "fanout_senders": HOT_FANOUT_SENDERS,
            "fanout_rate": options.rate,
            "burst_messages": options.messages,
            "paced_messages": options.paced_messages,
            "smoke": options.smoke,
        },
        data={"rows": rows, "fanout": configs},
    )
    report.checks = _checks(rows, configs)
    report.tables.append(
        Table(
            "Closed-loop senders in one room beside the same senders over as many rooms "
            "(ratios: one room to the spread layout, same server, same run)",
            [
                "server",
                "senders",
                "layout",
                "stored",
                "stored/s",
                "vs spread",
                "p50 ms",
                "p99 ms",
                "p99 vs spread",
                "UNAVAILABLE",
                "other errors",
                "subscribers",
                "deliveries",
                "lost",
                "dup",
                "reordered",
                "answer gaps",
            ],
            [
                [
                    row["target"],
                    row["concurrency"],
                    row["layout"] if row["rooms"] == 1 else f"{row['rooms']} rooms",
                    row["answered"],
                    row["per_second"],
                    row.get("ratio_per_second"),
                    row["p50_ms"],
                    row["p99_ms"],
                    row.get("ratio_p99"),
                    row["unavailable"],
                    row["other_errors"],
                    row["subscribers"],
                    f"{row['deliveries']:,}/{row['expected_deliveries']:,}",
                    row["lost"],
                    row["duplicates"] + row["answer_duplicates"],
                    row["reordered"] + row["out_of_order"],
                    row["answer_gaps"],
                ]
                for row in rows
            ],
        )
    )
    report.tables.append(
        Table(
            "Fan-out of a hot room: many senders beside one sender, same subscribers",
            [
                "server",
                "senders",
                "subscribers",
                "round",
                "messages/s sent",
                "deliveries",
                "deliveries/s",
                "p50 ms",
                "p99 ms",
                "lost",
                "dup",
                "reordered",
                "send errors",
            ],
            [
                [
                    config["target"],
                    config["senders"],
                    config["subscribers"],
                    phase
                    if phase == "burst"
                    else f"paced, {1 / config['paced_interval_seconds']:,.0f}/s offered",
                    config[phase]["messages_per_second"],
                    f"{config[phase]['deliveries']:,}/{config[phase]['expected_deliveries']:,}",
                    config[phase]["deliveries_per_second"],
                    config[phase]["p50_ms"],
                    config[phase]["p99_ms"],
                    config[phase]["lost"],
                    config[phase]["duplicates"],
                    config[phase]["reordered"],
                    config["send_errors"],
                ]
                for config in configs
                for phase in ("burst", "paced")
            ],
        )
    )
    report.notes += [
        f"Each level runs {options.duration:g} s per layout, one room first, after "
        f"{WARMUP_MESSAGES} message per sender; every sender has its own HTTP/1.1 "
        "keep-alive connection (the instances take turns) and waits for each answer "
        f"before its next send; senders take turns among {options.users} users.",
        "Targets: the one room's stored/s at least "
        f"{MIN_STORED_RATIO[1]:g}x the spread layout's at every C on one instance, "
        f"{MIN_STORED_RATIO[2]:g}x with two; its p99 at most {MAX_P99_RATIO:g}x; "
        "no UNAVAILABLE.",
        "Books: a subscriber on each instance per room must get every seq sent once and "
        "in order; a room's answers must be its next seqs, each once ('answer gaps' are "
        "seqs no answer carried: a send that failed may have stored its message).",
        f"Fan-out (on {widest}): the subscribers open over the instances' sockets in "
        f"turn; the many-sender row has {HOT_FANOUT_SENDERS} concurrent senders, its "
        f"paced round at {options.rate:g} messages/s; the one-sender row's paced round "
        "goes at half its burst rate, as in the fanout scenario.",
    ]
    samples = [
        sample
        for row in rows
        for sample in [*row["error_samples"], *row["subscriber_error_samples"]]
    ]
    samples += [sample for config in configs for sample in config["send_error_samples"]]
    if samples:
        report.notes.append("Errors: " + "; ".join(samples)[:1000])

    def throughput(figure: Figure) -> None:
        rate = figure.add_subplot(1, 2, 1)
        latency = figure.add_subplot(1, 2, 2)
        for label in dict.fromkeys(row["target"] for row in rows):
            for layout in (ONE_ROOM, SPREAD):
                mine = [r for r in rows if r["target"] == label and r["layout"] == layout]
                levels = [r["concurrency"] for r in mine]
                name = f"{label}, {layout}"
                rate.plot(levels, [r["per_second"] for r in mine], marker="o", label=name)
                latency.plot(levels, [r["p99_ms"] for r in mine], marker="o", label=name)
        rate.set(xscale="log", xlabel="senders", ylabel="stored/s", title="throughput")
        rate.set_ylim(bottom=0)
        latency.set(xscale="log", yscale="log", xlabel="senders", ylabel="ms", title="p99")
        rate.legend(fontsize="x-small")

    report.plots.append(Plot("throughput", throughput))
    return report
