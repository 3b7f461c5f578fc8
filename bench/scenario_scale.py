"""scale: what each of N instances spends on the real services, for the capacity model.

For each instance count of ``--instances`` (1, 2, 4), a group of fresh Plop processes
on the run's database and topics: N instances that hold the sockets, and one more,
the front, that takes every sendMessage and holds none (``bench.scale_layout``). The
accounts and rooms are set up once, on the first group. Per group, measured per
instance (``bench.scale_probe``):

1. idle: its CPU over ``IDLE_SECONDS`` with no socket open;
2. sockets: ``--sockets`` sockets spread evenly over the N instances, one
   messageAdded each, each room's followers spread over every instance; RSS per
   socket (the rise over the sockets it holds);
3. warm-up: one message into every room, every follower must get it once; then the
   CPU over the same window with the sockets open (and again at the end: the mean
   of the two is the idle rate subtracted below); the CPU per open socket is the
   difference from 1., per socket;
4. consume: the instances are stopped (SIGSTOP) while another process publishes
   ``--messages`` room events of rooms nobody follows straight into the run's room
   topic (``bench.scenario_keys.publish``, item 5's measurement, here on the
   instances themselves), then resumed: each reads and drops every one by its key,
   as a backlog. The CPU per consumed event is its CPU beyond its idle rate until its
   consumer counted them all (``plop_kafka_records_consumed_total``), and the events
   consumed/s how fast it went through them;
5. deliver: ``--rate`` sendMessage a second for ``--seconds``, room after room,
   through the front while the socket holders are stopped; resumed, they work
   through those events as a backlog, and every follower must get every message
   once and in order. The CPU per delivery is each instance's CPU from its resume to
   the last delivery, beyond its idle rate and its consuming (4.), over its
   deliveries: it holds its part of decoding and rendering each event for its
   followers. A least-squares line over every instance of every group (their
   deliveries per event differ with N) splits that into a cost per served event and
   one per delivery (``bench.scale_model``). The front's CPU per send is its CPU
   over the sends, beyond its idle rate.

Stopping the instances keeps each measured window short and full of the work it
measures: on a shared machine the idle rate wanders by a few % of a core, which over
a long paced window is more than the events themselves cost.

The machine's busy share and load average are kept for every window: the instances,
the load, the front and the services share its cores, and the figures move with
whatever else runs there. Timings decide nothing: the exit status is the books'.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from matplotlib.figure import Figure

from bench import scale_layout
from bench.common import Options, parse_backend, plop_settings
from bench.load import LoadPool, Plan, merge_rounds
from bench.report import Plot, Report, Table
from bench.scale_layout import FrontSender, ScaleLayout
from bench.scale_model import (
    CONSUME_LIMIT_SHARE,
    Costs,
    Load,
    consume_limit_rate,
    fit_line,
    median,
    net_cpu,
    per_second,
    shares,
)
from bench.scale_probe import InstanceProbe, Window
from bench.server import ServerGroup, plop_server
from bench.targets import Target
from devtools.services import start_real_services
from pubsub import ROOM_EVENTS
from pubsub.kafka import bootstrap_servers

IDLE_SECONDS = 10.0
SMOKE_IDLE_SECONDS = 1.0
SETTLE_SECONDS = 1.5
SMOKE_SETTLE_SECONDS = 0.2
SOCKETS_PER_WORKER = 5_000
OPEN_ATTEMPTS = 5
CONNECT_CONCURRENCY = 50
OPEN_WAIT_SECONDS = 120.0
SEND_CONNECTIONS = 32
CONSUME_WAIT_SECONDS = 300.0
MIN_WAIT_SECONDS = 60.0
# The projection's grid: instances, sockets over the cluster, room events a second.
GRID_INSTANCES = (1, 2, 4, 8, 16)
GRID_SOCKETS = (10_000, 100_000)
GRID_RATES = (100.0, 1_000.0, 10_000.0)


def _topic(options: Options) -> str:
    # The run's topic prefix, as bench.server.backend_env sets PLOP_TOPIC_PREFIX.
    return f"bench-{options.run_id}.{ROOM_EVENTS}"


async def _publish_backlog(broker_url: str, topic: str, count: int) -> None:
    """``count`` events of rooms nobody follows (and two markers of another such room),
    published by a process of its own, as scenario_keys publishes its dropped run."""
    arguments = json.dumps([bootstrap_servers(broker_url), topic, "dropped", "nobody", count])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import asyncio, json, sys; from bench.scenario_keys import publish; "
        "asyncio.run(publish(*json.loads(sys.argv[1])))",
        arguments,
        stdin=asyncio.subprocess.DEVNULL,
    )
    if await process.wait() != 0:
        raise RuntimeError("publishing the backlog failed")


@asynccontextmanager
async def _started_in_turn(group: ServerGroup) -> AsyncIterator[ServerGroup]:
    """Starts the instances one after the other: several starting at once on a busy
    machine can each take longer than a start may."""
    try:
        for instance in group.instances:
            await instance.start()
        yield group
    finally:
        await group.stop()


def _progress(group: dict[str, Any]) -> None:
    """One line per group as it ends: a long run shows where it is."""
    figures = [
        (row["cpu_us_per_consumed_event"], row["cpu_us_per_delivery"]) for row in group["rows"]
    ]
    sys.stdout.write(
        f"scale: {group['instances']} instances done in {group['phase_seconds']}; "
        f"µs per consumed event and per delivery: {figures}\n"
    )
    sys.stdout.flush()


def _rate(window: Window, index: int) -> float:
    return per_second(window.cpu_seconds[index], window.seconds)


def _books(merged: dict[str, Any], expected: int) -> dict[str, Any]:
    return {
        "expected_deliveries": expected,
        "deliveries": merged["deliveries"],
        "lost": merged["lost"],
        "duplicates": merged["duplicates"],
        "reordered": merged["reordered"],
        "beyond_expected": merged["beyond_expected"],
        "errors": merged["error_count"],
        "error_samples": merged["errors"],
        "closed_by_server": merged["closed_by_server"],
    }


def _expected(
    shares_of: list[list[tuple[int, Plan]]],
    layout: ScaleLayout,
    before: dict[str, int],
    after: dict[str, int],
) -> list[int]:
    """Per instance, the deliveries due to its sockets for the messages sent between
    ``before`` and ``after``."""
    return [
        sum(after[layout.rooms[index]] - before[layout.rooms[index]] for index, _ in share)
        for share in shares_of
    ]


async def _run_group(
    options: Options,
    instances: int,
    layout_holder: list[ScaleLayout],
    last_seq: dict[str, int],
) -> dict[str, Any]:
    services = start_real_services()
    name = f"scale-{options.run_id}-x{instances}"
    group = plop_server(name, "real", options.run_id, plop_settings(), instances + 1)
    settle = SMOKE_SETTLE_SECONDS if options.smoke else SETTLE_SECONDS
    idle_seconds = SMOKE_IDLE_SECONDS if options.smoke else IDLE_SECONDS
    sockets = options.subscribers[0]
    phases: dict[str, float] = {}
    phase_started = time.monotonic()
    async with _started_in_turn(group):
        phases["start"] = time.monotonic() - phase_started
        phase_started = time.monotonic()
        target = Target("plop", f"Plop (real, {instances} instances)", group)
        front, holders = group.instances[0], group.instances[1:]
        if not layout_holder:
            layout_holder.append(await scale_layout.build(target, options.users, options.rooms))
            last_seq.update(dict.fromkeys(layout_holder[0].rooms, 0))
        layout = layout_holder[0]
        probe = InstanceProbe(group.instances)
        pool = LoadPool(options.workers or max(1, math.ceil(sockets / SOCKETS_PER_WORKER)))
        sender = FrontSender(target, front.port, layout, last_seq, SEND_CONNECTIONS)
        try:
            await asyncio.sleep(settle)  # the processes' start-up work settles
            idle = await probe.idle(idle_seconds)
            rss_before = probe.rss()
            plans = layout.plans(sockets, instances, last_seq)
            opened = 0
            failed = 0
            held = []
            for holder, share in zip(holders, plans, strict=True):
                before = await probe.subscriptions(holder)
                reply = await pool.open(
                    holder.base_url.replace("http://", "ws://") + "/graphql",
                    [plan for _, plan in share],
                    attempts=OPEN_ATTEMPTS,
                    concurrency=CONNECT_CONCURRENCY,
                )
                opened += reply["opened"]
                failed += reply["failed_sockets"]
                count = await probe.wait_subscriptions(
                    holder, before + reply["opened"], OPEN_WAIT_SECONDS
                )
                held.append(count - before)
            await asyncio.sleep(settle)  # freed buffers settle; nothing signals it
            rss_open = probe.rss()

            # Warm-up: each instance's room feeds start, every follower gets one message.
            start_seq = sender.last_seq
            await pool.all("round")
            await sender.wave()
            warm = merge_rounds(
                await pool.all(
                    "wait", {"expected": sender.last_seq, "within": MIN_WAIT_SECONDS * 2}
                )
            )
            warm_books = _books(warm, sum(_expected(plans, layout, start_seq, sender.last_seq)))
            # Idle with the sockets open and their feeds started (after the warm-up).
            idle_open = await probe.idle(idle_seconds)

            # Consume: a backlog of events nobody follows, through every instance.
            topic = _topic(options)
            counts_before = await probe.consumed_all(topic)
            published = options.messages + 2  # and the two markers
            targets = [count.dropped + published for count in counts_before]
            phases["setup"] = time.monotonic() - phase_started
            phase_started = time.monotonic()
            async with probe.paused():
                await _publish_backlog(services.broker_url, topic, options.messages)
            async with probe.measured() as clock:
                cpu_start = probe.cpu()
                consume_seconds, cpu_done, counts_after = await probe.wait_consumed(
                    topic, targets, time.monotonic(), CONSUME_WAIT_SECONDS
                )
            consume_window = clock.result()
            phases["consume"] = time.monotonic() - phase_started
            phase_started = time.monotonic()
            consumed = [
                after.dropped - before.dropped
                for after, before in zip(counts_after, counts_before, strict=True)
            ]
            consume_cpu = [done - start for done, start in zip(cpu_done, cpu_start, strict=True)]

            # Deliver: paced sends through the front while the holders are paused,
            # then the holders work through those events as a backlog.
            start_seq = sender.last_seq
            counts_before = await probe.consumed_all(topic)
            await pool.all("round")
            front_cpu = front.cpu_seconds()
            send_started = time.monotonic()
            clock = probe.measured()
            async with probe.paused(holders):
                sent = await sender.paced(options.rate, options.duration)
                send_seconds = time.monotonic() - send_started
                front_cpu = front.cpu_seconds() - front_cpu
                # Started while the holders are stopped: none of their work is missed.
                clock.start()
            within = MIN_WAIT_SECONDS + sockets * sent / 500
            async with probe.polled():
                merged = merge_rounds(
                    await pool.all("wait", {"expected": sender.last_seq, "within": within})
                )
            clock.stop()
            deliver_window = clock.result()
            counts_after = await probe.consumed_all(topic)
            due = _expected(plans, layout, start_seq, sender.last_seq)
            deliver_books = _books(merged, sum(due))
            rss_end = probe.rss()
            # Idle again: the rate subtracted is the mean of the windows before and after.
            idle_after = await probe.idle(idle_seconds)
            phases["deliver"] = time.monotonic() - phase_started
        finally:
            last_seq.update(sender.last_seq)
            await pool.close()
            await sender.close()
            await probe.close()

    rows = []
    for number in range(instances):
        index = number + 1  # the probe's instances: the front first
        idle_rate = _rate(idle, index)
        open_rate = (_rate(idle_open, index) + _rate(idle_after, index)) / 2
        held_here = max(1, held[number])
        c_event = net_cpu(consume_cpu[index], open_rate, consume_seconds[index]) / max(
            1.0, consumed[index]
        )
        decoded = counts_after[index].decoded - counts_before[index].decoded
        dropped = counts_after[index].dropped - counts_before[index].dropped
        deliver_net = (
            net_cpu(deliver_window.cpu_seconds[index], open_rate, deliver_window.seconds)
            - (decoded + dropped) * c_event
        )
        rows.append(
            {
                "instances": instances,
                "instance": number + 1,
                "sockets": held[number],
                "rss_kib_per_socket": round(
                    (rss_open[index] - rss_before[index]) / held_here / 1024, 1
                ),
                "rss_mb_end": round(rss_end[index] / 2**20, 1),
                "idle_cpu_percent": round(idle_rate * 100, 2),
                "idle_cpu_percent_with_sockets": round(open_rate * 100, 2),
                "cpu_us_per_socket_second": round((open_rate - idle_rate) / held_here * 1e6, 2),
                "consumed_events": int(consumed[index]),
                "consume_seconds": round(consume_seconds[index], 3),
                "events_consumed_per_second": round(consumed[index] / consume_seconds[index], 1),
                "cpu_us_per_consumed_event": round(c_event * 1e6, 2),
                "deliver_events_decoded": int(decoded),
                "deliver_events_dropped": int(dropped),
                "deliver_events_per_second": round((decoded + dropped) / deliver_window.seconds, 1),
                "deliveries": due[number],
                "deliveries_per_second": round(due[number] / deliver_window.seconds, 1),
                "deliveries_per_event": round(due[number] / decoded, 2) if decoded else None,
                "deliver_cpu_percent": round(_rate(deliver_window, index) * 100, 2),
                "deliver_net_cpu_seconds": round(deliver_net, 4),
                "cpu_us_per_delivery": round(deliver_net / due[number] * 1e6, 2)
                if due[number]
                else None,
            }
        )
    front_rate = (_rate(idle_open, 0) + _rate(idle_after, 0)) / 2
    front_net = net_cpu(front_cpu, front_rate, send_seconds)
    return {
        "instances": instances,
        "sockets": sockets,
        "opened": opened,
        "failed_sockets": failed,
        "rooms": len(layout.rooms),
        "rate": options.rate,
        "sent": sent,
        "sent_per_second": round(sent / send_seconds, 1),
        "deliver_seconds": deliver_window.seconds,
        "send_errors": len(sender.errors),
        "send_error_samples": sender.errors[:3],
        "seq_gaps": sender.seq_gaps,
        "published_events": published,
        "every_instance_consumed_every_event": all(count >= published for count in consumed),
        "rows": rows,
        "front": {
            "idle_cpu_percent": round(front_rate * 100, 2),
            "send_cpu_percent": round(per_second(front_cpu, send_seconds) * 100, 2),
            "cpu_us_per_send": round(front_net / sent * 1e6, 1) if sent else None,
            "consumed_events": int(consumed[0]),
        },
        "warm_up": warm_books,
        "deliver": deliver_books,
        "phase_seconds": {phase: round(seconds, 1) for phase, seconds in phases.items()},
        "machine": {
            window_name: {
                "seconds": window.seconds,
                "busy_share": window.machine_busy_share,
                "load_average_1_5_15": window.load_average,
            }
            for window_name, window in (
                ("idle", idle),
                ("idle_with_sockets", idle_open),
                ("idle_with_sockets_after", idle_after),
                ("consume", consume_window),
                ("deliver", deliver_window),
            )
        },
    }


def _model(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's coefficients from every instance of every group of the run."""
    rows = [row for group in groups for row in group["rows"]]
    points = [
        (
            row["deliveries"] / row["deliver_events_decoded"],
            row["deliver_net_cpu_seconds"] / row["deliver_events_decoded"] * 1e6,
        )
        for row in rows
        if row["deliver_events_decoded"]
    ]
    fitted = fit_line(points)
    per_delivery = median([row["cpu_us_per_delivery"] for row in rows])
    costs = Costs(
        event_us=median([row["cpu_us_per_consumed_event"] for row in rows]) or 0.0,
        served_us=round(fitted[0], 2) if fitted else 0.0,
        delivery_us=round(fitted[1], 2) if fitted else per_delivery or 0.0,
        send_us=median([group["front"]["cpu_us_per_send"] for group in groups]) or 0.0,
        socket_us_per_second=median([row["cpu_us_per_socket_second"] for row in rows]) or 0.0,
    )
    return {
        "cpu_us_per_consumed_event": costs.event_us,
        "cpu_us_per_delivery_median": per_delivery,
        "fit_points": [(round(x, 3), round(y, 2)) for x, y in points],
        "fit_cpu_us_per_served_event": round(fitted[0], 2) if fitted else None,
        "fit_cpu_us_per_delivery": round(fitted[1], 2) if fitted else None,
        "cpu_us_per_send": costs.send_us,
        "cpu_us_per_socket_second": costs.socket_us_per_second,
        "rss_kib_per_socket": median([row["rss_kib_per_socket"] for row in rows]),
        "costs": costs.__dict__,
        "consume_limit_share": CONSUME_LIMIT_SHARE,
        "consume_limit_rate_dropped": consume_limit_rate(costs, 0.0),
        "consume_limit_rate_served": consume_limit_rate(costs, 1.0),
    }


def _projection(model: dict[str, Any], fanout: float) -> list[dict[str, Any]]:
    costs = Costs(**model["costs"])
    rows = []
    for sockets in GRID_SOCKETS:
        for rate in GRID_RATES:
            for instances in GRID_INSTANCES:
                parts = shares(costs, Load(instances, sockets, rate, fanout))
                rows.append(
                    {
                        "instances": instances,
                        "sockets": sockets,
                        "rate": rate,
                        **{
                            f"{name}_percent": round(value * 100, 1)
                            for name, value in parts.items()
                        },
                    }
                )
    return rows


def _checks(groups: list[dict[str, Any]]) -> dict[str, Any]:
    books = [group[phase] for group in groups for phase in ("warm_up", "deliver")]
    return {
        "expected_deliveries": sum(b["expected_deliveries"] for b in books),
        "deliveries": sum(b["deliveries"] for b in books),
        "lost": sum(b["lost"] for b in books),
        "duplicates": max((b["duplicates"] for b in books), default=0),
        "reordered": max((b["reordered"] for b in books), default=0),
        "beyond_expected": sum(b["beyond_expected"] for b in books),
        "errors": sum(b["errors"] for b in books),
        "subscribers": sum(group["sockets"] for group in groups),
        "opened": sum(group["opened"] for group in groups),
        "send_errors": sum(group["send_errors"] for group in groups),
        "seq_gaps": sum(group["seq_gaps"] for group in groups),
        # Instance groups where an instance did not read every published event.
        "failed": sum(not group["every_instance_consumed_every_event"] for group in groups),
    }


async def run(options: Options) -> Report:
    counts = [parse_backend(backend) for backend in options.backends]
    if any(name != "real" for name, _ in counts):
        raise ValueError("the scale scenario runs on the real services only (--backend real)")
    layout: list[ScaleLayout] = []
    last_seq: dict[str, int] = {}
    groups = []
    for _, instances in counts:
        groups.append(await _run_group(options, instances, layout, last_seq))
        _progress(groups[-1])
    model = _model(groups)
    fanout = options.subscribers[0] / max(1, options.rooms)
    projection = _projection(model, fanout)
    report = Report(
        scenario="scale",
        title="Scale: what each of N instances spends per consumed event, delivery and socket",
        argv=options.argv,
        parameters={
            "instances": [instances for _, instances in counts],
            "sockets": options.subscribers[0],
            "rooms": options.rooms,
            "users": options.users,
            "rate": options.rate,
            "seconds": options.duration,
            "consumed_events": options.messages,
            "idle_seconds": SMOKE_IDLE_SECONDS if options.smoke else IDLE_SECONDS,
            "smoke": options.smoke,
        },
        data={"groups": groups, "model": model, "fanout": fanout, "projection": projection},
    )
    report.checks = _checks(groups)
    _tables(report, groups, model, projection)
    report.notes += _notes(options)
    report.plots.append(Plot("costs", lambda figure: _plot(figure, groups)))
    return report


def _tables(
    report: Report,
    groups: list[dict[str, Any]],
    model: dict[str, Any],
    projection: list[dict[str, Any]],
) -> None:
    rows = [row for group in groups for row in group["rows"]]
    report.tables.append(
        Table(
            "Per instance",
            [
                "N",
                "instance",
                "sockets",
                "RSS KiB/socket",
                "idle CPU %",
                "idle CPU % with sockets",
                "CPU µs/s per socket",
                "backlog events/s",
                "CPU µs/consumed event",
                "events/s after resume",
                "deliveries/s",
                "deliveries/event",
                "CPU % after resume",
                "CPU µs/delivery",
            ],
            [
                [
                    row["instances"],
                    row["instance"],
                    row["sockets"],
                    row["rss_kib_per_socket"],
                    row["idle_cpu_percent"],
                    row["idle_cpu_percent_with_sockets"],
                    row["cpu_us_per_socket_second"],
                    row["events_consumed_per_second"],
                    row["cpu_us_per_consumed_event"],
                    row["deliver_events_per_second"],
                    row["deliveries_per_second"],
                    row["deliveries_per_event"],
                    row["deliver_cpu_percent"],
                    row["cpu_us_per_delivery"],
                ]
                for row in rows
            ],
        )
    )
    report.tables.append(
        Table(
            "Books, the front and the machine",
            [
                "N",
                "sockets opened",
                "sent",
                "sent/s",
                "deliveries expected",
                "got",
                "lost",
                "dup",
                "events consumed by every instance",
                "front CPU µs/send",
                "machine busy (idle, consume, deliver)",
                "load average",
            ],
            [
                [
                    group["instances"],
                    group["opened"],
                    group["sent"],
                    group["sent_per_second"],
                    group["warm_up"]["expected_deliveries"]
                    + group["deliver"]["expected_deliveries"],
                    group["warm_up"]["deliveries"] + group["deliver"]["deliveries"],
                    group["warm_up"]["lost"] + group["deliver"]["lost"],
                    max(group["warm_up"]["duplicates"], group["deliver"]["duplicates"]),
                    group["every_instance_consumed_every_event"],
                    group["front"]["cpu_us_per_send"],
                    ", ".join(
                        f"{group['machine'][name]['busy_share']:.0%}"
                        for name in ("idle_with_sockets", "consume", "deliver")
                    ),
                    group["machine"]["deliver"]["load_average_1_5_15"],
                ]
                for group in groups
            ],
        )
    )
    report.tables.append(
        Table(
            "The model's coefficients (medians over the run's instances; the fit over all)",
            ["figure", "value"],
            [
                ["CPU µs per consumed event (dropped by key)", model["cpu_us_per_consumed_event"]],
                ["CPU µs per served event (fit's intercept)", model["fit_cpu_us_per_served_event"]],
                ["CPU µs per delivery (fit's slope)", model["fit_cpu_us_per_delivery"]],
                [
                    "CPU µs per delivery (median, served events included)",
                    model["cpu_us_per_delivery_median"],
                ],
                ["CPU µs per send (the front)", model["cpu_us_per_send"]],
                ["CPU µs a second per open socket", model["cpu_us_per_socket_second"]],
                ["RSS KiB per socket", model["rss_kib_per_socket"]],
                [
                    f"events/s at which consuming takes {CONSUME_LIMIT_SHARE:.0%} (none served)",
                    model["consume_limit_rate_dropped"],
                ],
                [
                    f"events/s at which consuming takes {CONSUME_LIMIT_SHARE:.0%} (all served)",
                    model["consume_limit_rate_served"],
                ],
            ],
        )
    )
    report.tables.append(
        Table(
            "Projection: one instance's % of a core, every event served on every instance",
            [
                "N",
                "sockets",
                "events/s",
                "consume %",
                "deliver %",
                "send %",
                "sockets %",
                "total %",
            ],
            [
                [
                    row["instances"],
                    row["sockets"],
                    row["rate"],
                    row["consume_percent"],
                    row["deliver_percent"],
                    row["send_percent"],
                    row["sockets_percent"],
                    row["total_percent"],
                ]
                for row in projection
            ],
        )
    )


def _notes(options: Options) -> list[str]:
    return [
        "Each group is N fresh socket-holding Plop processes and a front process that "
        "takes every sendMessage and holds no socket, on the run's own database and "
        "topics; users and rooms are set up once.",
        f"Socket i sits on instance i mod N and follows room (i div N) mod {options.rooms:,} "
        "with that room's owner's token; every room's followers are spread over the "
        "instances.",
        "Idle windows poll every instance's /metrics at the pace the backlog wait does, "
        "so that subtracting the idle rate also takes the polling out. The idle rate with "
        "sockets is the mean of a window after the warm-up and one at the end.",
        "CPU per consumed event: the instances are stopped (SIGSTOP) while another "
        "process publishes the events (as bench/scenario_keys.py does), then resumed; "
        "each instance's CPU beyond its idle rate until its consumer had read every "
        "published event, over those events.",
        "CPU per delivery: the socket holders are stopped while the front takes the "
        "paced sends, then resumed; each one's CPU until the last delivery, beyond its "
        "idle rate and the consuming of each event at the figure above, over its "
        "deliveries. It includes the decoding and rendering of each event, shared by "
        "the instance's followers of the room; the fit of that CPU per event against "
        "deliveries per event over every instance of every group separates the two.",
        "The machine's busy share covers every process: the instances, the front, the "
        "load workers, Kafka, FerretDB/PostgreSQL, Redis and anything else running.",
    ]


def _plot(figure: Figure, groups: list[dict[str, Any]]) -> None:
    rows = [row for group in groups for row in group["rows"]]
    labels = [f"N={row['instances']} #{row['instance']}" for row in rows]
    left = figure.add_subplot(1, 2, 1)
    left.bar(labels, [row["cpu_us_per_consumed_event"] for row in rows])
    left.set(ylabel="µs of CPU", title="per consumed event (dropped)")
    left.tick_params(axis="x", labelrotation=60, labelsize="x-small")
    right = figure.add_subplot(1, 2, 2)
    right.bar(labels, [row["cpu_us_per_delivery"] or 0.0 for row in rows])
    right.set(ylabel="µs of CPU", title="per delivery (served events included)")
    right.tick_params(axis="x", labelrotation=60, labelsize="x-small")
