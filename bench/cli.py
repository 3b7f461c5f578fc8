"""``python -m bench SCENARIO``: run one benchmark scenario and write its results;
``python -m bench all``: every scenario behind the benchmark table, then the tables.

Scenarios: send, hot, fanout, memory, reconnect, stored, search, keys, account, scale (see each
``bench/scenario_*.py``).
Every scenario starts the servers it measures (Plop, and the raw baseline in the same run),
drives them from other processes over loopback, stops by itself within its bounds,
and writes ``<scenario>.json``, ``<scenario>.md`` and PNG plots to ``--out``.
``--smoke`` runs it with tiny sizes in seconds (as the test suite does). The exit
status is 1 when the run's own bookkeeping fails (a message lost or duplicated, a
delivery missing, an error), 0 otherwise; timings never decide it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvloop

from bench import (
    scenario_account,
    scenario_fanout,
    scenario_hot,
    scenario_keys,
    scenario_memory,
    scenario_persisted,
    scenario_reconnect,
    scenario_scale,
    scenario_search,
    scenario_send,
    scenario_stored,
)
from bench.common import Options
from bench.report import Report, write
from bench.server import REPO, raise_open_files

RESULTS = REPO / "bench" / "results"
SMOKE_RESULTS = RESULTS / "tmp"

SCENARIOS: dict[str, Callable[[Options], Coroutine[Any, Any, Report]]] = {
    "send": scenario_send.run,
    "hot": scenario_hot.run,
    "fanout": scenario_fanout.run,
    "memory": scenario_memory.run,
    "reconnect": scenario_reconnect.run,
    "stored": scenario_stored.run,
    "search": scenario_search.run,
    "keys": scenario_keys.run,
    "account": scenario_account.run,
    "persisted": scenario_persisted.run,
    "scale": scenario_scale.run,
}

# Per scenario: the full-size defaults, then the smoke ones.
DEFAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "send": (
        {"concurrency": [1, 16, 64], "duration": 10.0, "max_requests": 20_000, "users": 16},
        {"concurrency": [1, 4], "duration": 1.0, "max_requests": 40, "users": 2},
    ),
    "persisted": (
        {"concurrency": [16, 64], "duration": 10.0, "max_requests": 20_000, "users": 16},
        {"concurrency": [2], "duration": 1.0, "max_requests": 20, "users": 2},
    ),
    # concurrency: the levels of senders; subscribers, messages, paced_messages and
    # rate: the hot room's fan-out (on the backend with the most instances).
    "hot": (
        {
            "concurrency": [16, 64, 256],
            "duration": 10.0,
            "users": 16,
            "subscribers": [1_000],
            "messages": 100,
            "paced_messages": 500,
            "rate": 500.0,
        },
        {
            "concurrency": [2, 4],
            "duration": 1.0,
            "users": 2,
            "subscribers": [10],
            "messages": 10,
            "paced_messages": 20,
            "rate": 50.0,
        },
    ),
    "fanout": (
        {
            "subscribers": [1_000, 5_000, 10_000],
            "rooms": 100,
            "messages": 30,
            "paced_messages": 20,
            "users": 200,
        },
        {"subscribers": [20], "rooms": 4, "messages": 10, "paced_messages": 5, "users": 5},
    ),
    "memory": (
        {
            "subscribers": [2_000],
            "rooms": 10,
            "users": 100,
            "max_subscriptions": 20_000,
            "per_socket": 10,
            "step": 2_000,
            "max_seconds": 300.0,
            "deliveries": 200_000,
        },
        {
            "subscribers": [20],
            "rooms": 2,
            "users": 4,
            "max_subscriptions": 60,
            "per_socket": 5,
            "step": 20,
            "max_seconds": 60.0,
            "deliveries": 100,
        },
    ),
    "reconnect": (
        {
            "subscribers": [2_000],
            "rooms": 10,
            "users": 200,
            "rate": 10.0,
            "down_seconds": 2.0,
            "max_seconds": 120.0,
        },
        {
            "subscribers": [20],
            "rooms": 2,
            "users": 5,
            "rate": 10.0,
            "down_seconds": 0.5,
            "max_seconds": 30.0,
        },
    ),
    # messages: stored in the full room; max_requests: sends measured per room.
    "stored": ({"messages": 10_000, "max_requests": 200}, {"messages": 30, "max_requests": 10}),
    # messages: in the big room; rooms of room_messages each beside it; max_requests:
    # searches per query and scope.
    "search": (
        {"messages": 100_000, "rooms": 200, "room_messages": 500, "max_requests": 50},
        {"messages": 300, "rooms": 3, "room_messages": 40, "max_requests": 3},
    ),
    # messages: consumed per run (dropped, decoded, served).
    "keys": ({"messages": 50_000}, {"messages": 200}),
    # subscribers: sockets per layout; users: followers, each in per_socket of the rooms;
    # memory_sockets of each kind (an eighth as many of the account in followed_rooms
    # rooms). 2,000 events sockets do not all become active on the embedded default
    # on 2 cores (docs/benchmarks.md): 500 do.
    "account": (
        {
            "subscribers": [500],
            "rooms": 200,
            "users": 100,
            "per_socket": 10,
            "messages": 3,
            "paced_messages": 2,
            "memory_sockets": 120,
            "followed_rooms": 1_000,
        },
        {
            "subscribers": [8],
            "rooms": 4,
            "users": 4,
            "per_socket": 2,
            "messages": 3,
            "paced_messages": 2,
            "memory_sockets": 16,
            "followed_rooms": 10,
        },
    ),
    # subscribers: the sockets spread over each group's instances (--sockets); rate:
    # sendMessage/s, for duration s, through the front; messages: events published for
    # the consumers to read and drop (real services only).
    "scale": (
        {
            "subscribers": [2_000],
            "rooms": 200,
            "users": 20,
            "rate": 30.0,
            "duration": 40.0,
            "messages": 50_000,
        },
        {
            "subscribers": [8],
            "rooms": 4,
            "users": 2,
            "rate": 10.0,
            "duration": 1.0,
            "messages": 300,
        },
    ),
}


def _counts(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"counts must be 1 or more: {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run a Plop benchmark scenario against servers it starts.",
    )
    parse.add_argument("scenario", choices=sorted(SCENARIOS))
    parse.add_argument(
        "--backend",
        choices=["embedded", "real", "both"],
        default=None,
        help="Plop's backends: the embedded default, the real services "
        "(scripts/services.sh), or both [send: both; search: real (only); others: "
        "embedded; --smoke: embedded].",
    )
    parse.add_argument(
        "--instances",
        type=_counts,
        default=None,
        help="Plop processes sharing the real services, comma-separated: each count "
        "measured in the same run (e.g. 1,2 for the scaling rows) [1; scale: 1,2,4, "
        "--smoke 1,2].",
    )
    parse.add_argument("--smoke", action="store_true", help="Tiny sizes, seconds.")
    parse.add_argument("--out", type=Path, default=None, help=f"[default: {RESULTS}]")
    parse.add_argument(
        "--subscribers",
        "--sockets",
        dest="subscribers",
        type=_counts,
        help="Counts, comma-separated (scale: the sockets spread over the instances).",
    )
    parse.add_argument(
        "--concurrency",
        "--senders",
        dest="concurrency",
        type=_counts,
        help="send, hot, persisted: levels of concurrent senders, comma-separated.",
    )
    parse.add_argument(
        "--messages",
        type=int,
        help="fanout, hot: burst messages per room; keys, scale: events each consumer reads.",
    )
    parse.add_argument("--paced-messages", type=int, help="fanout, hot: paced messages per room.")
    parse.add_argument(
        "--rooms",
        type=int,
        help="Rooms the subscribers are spread over (fanout: 1 runs the one-room layout only).",
    )
    parse.add_argument("--room-messages", type=int, help="search: messages in each other room.")
    parse.add_argument("--users", type=int, help="Users signed up (they share sockets).")
    parse.add_argument("--workers", type=int, default=0, help="Load processes [auto].")
    parse.add_argument(
        "--duration",
        "--seconds",
        dest="duration",
        type=float,
        help="send, hot, persisted: seconds per level; scale: seconds of paced sends.",
    )
    parse.add_argument("--max-requests", type=int, help="send: requests per level at most.")
    parse.add_argument("--max-subscriptions", type=int, help="memory: the ramp stops at this many.")
    parse.add_argument(
        "--per-socket",
        type=int,
        help="memory: subscriptions per ramp socket; account: rooms per follower.",
    )
    parse.add_argument("--memory-sockets", type=int, help="account: sockets per memory kind.")
    parse.add_argument(
        "--followed-rooms", type=int, help="account: rooms of the wide account's one socket."
    )
    parse.add_argument("--step", type=int, help="memory: subscriptions added per ramp step.")
    parse.add_argument(
        "--rate",
        type=float,
        help="reconnect: messages per room per second; hot: the paced rate into the hot "
        "room of the fan-out rows; scale: sendMessage/s over all the rooms.",
    )
    parse.add_argument("--down-seconds", type=float, help="reconnect: time dropped.")
    parse.add_argument(
        "--max-seconds", type=float, help="memory: ramp time; reconnect: catch-up time."
    )
    parse.add_argument(
        "--deliveries",
        type=int,
        help="memory: deliveries to the idle sockets before they all close.",
    )
    parse.add_argument(
        "--peer",
        dest="peers",
        action="append",
        choices=["centrifugo"],
        default=[],
        help="fanout, memory: also run this server with the same load (Centrifugo is "
        "built with `go install` into ~/.cache/plop/centrifugo on first use).",
    )
    return parse


def options_from(argv: list[str]) -> Options:
    args = parser().parse_args(argv)
    full, smoke = DEFAULTS[args.scenario]
    values = dict(smoke if args.smoke else full)
    for name in (
        "subscribers",
        "concurrency",
        "messages",
        "paced_messages",
        "rooms",
        "users",
        "duration",
        "max_requests",
        "max_subscriptions",
        "per_socket",
        "step",
        "rate",
        "down_seconds",
        "max_seconds",
        "deliveries",
        "room_messages",
        "memory_sockets",
        "followed_rooms",
    ):
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    default_backend = {
        "send": "embedded" if args.smoke else "both",
        "persisted": "embedded" if args.smoke else "both",
        "search": "real",
        "keys": "real",
        "account": "embedded" if args.smoke else "both",
        "scale": "real",
    }
    backend = args.backend or default_backend.get(args.scenario, "embedded")
    backends = ["embedded", "real"] if backend == "both" else [backend]
    default_instances = ([1, 2] if args.smoke else [1, 2, 4]) if args.scenario == "scale" else [1]
    instances: list[int] = args.instances or default_instances
    if any(count > 1 for count in instances) and "real" not in backends:
        parser().error("--instances above 1 needs --backend real or both")
    backends = [
        name if name != "real" or count == 1 else f"real-x{count}"
        for name in backends
        for count in (instances if name == "real" else [1])
    ]
    out = args.out or (SMOKE_RESULTS if args.smoke else RESULTS)
    return Options(
        scenario=args.scenario,
        argv=list(argv),
        out=out,
        backends=backends,
        smoke=args.smoke,
        workers=args.workers,
        peers=sorted(set(args.peers)),
        **values,
    )


def passed(checks: dict[str, Any]) -> bool:
    """The run's bookkeeping: nothing lost, duplicated, missing or failed."""
    zero = (
        "lost",
        "duplicates",
        "reordered",
        "errors",
        "send_errors",
        "seq_gaps",
        "out_of_order",
        "failed",
    )
    if any(checks.get(name, 0) for name in zero):
        return False
    if "expected_deliveries" in checks and checks["deliveries"] != checks["expected_deliveries"]:
        return False
    if "opened" in checks and checks["opened"] != checks.get("subscribers"):
        return False
    return "answered" not in checks or checks["answered"] == checks["requests"]


def main(argv: list[str]) -> int:
    """Runs the scenario named in ``argv`` (or, for ``all``, every scenario of the
    benchmark table: ``bench/regenerate.py``); 0 if its bookkeeping holds."""
    if argv[:1] == ["all"]:
        from bench import regenerate

        return regenerate.main(argv[1:])
    options = options_from(argv)
    raise_open_files()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        report = runner.run(SCENARIOS[options.scenario](options))
    paths = write(report, options.out)
    ok = passed(report.checks)
    lines = [f"{report.title}: {'bookkeeping ok' if ok else 'BOOKKEEPING FAILED'}"]
    lines += [f"  {name}: {value}" for name, value in report.checks.items()]
    lines += [f"  wrote {path}" for path in paths]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if ok else 1
