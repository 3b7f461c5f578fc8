"""What a socket holds on the server: idle, on one messageAdded, on one events
subscription of an account in one room, and of an account in many rooms.

On a Plop process that has only set up its users and rooms (so that nothing an
earlier part freed hides what these sockets take), ``memory_sockets`` sockets of each
kind are opened in steps (an eighth as many of the wide account's: each of its
streams re-reads the account's rooms every ``PLOP_MEMBERSHIP_CHECK_SECONDS``, and a
few hundred of them keep the embedded store busy), the server's RSS read after each
step settles, as ``scenario_memory`` does; the
least-squares slope is the memory per socket. Every socket stays open while the next
kind opens. The extra per followed room is the difference between the two ``events``
kinds, over the rooms between them. Then one message into the narrow account's room
and one into two of the wide account's rooms must reach every subscribed socket once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bench import account_layout
from bench.common import Options, Sender
from bench.load import LoadPool, Plan, Stream, merge_rounds
from bench.targets import Account, Target

STEPS = 4
SMOKE_STEPS = 2
SETTLE_SECONDS = 1.5
SMOKE_SETTLE_SECONDS = 0.1
OPEN_ATTEMPTS = 5
# Handshakes at once: memory is measured on sockets, not on bursts of connects.
CONNECT_CONCURRENCY = 50
STEP_TIMEOUT_SECONDS = 60.0
VERIFY_TIMEOUT_SECONDS = 120.0
IDLE_WINDOW_SECONDS = 10.0
SMOKE_IDLE_WINDOW_SECONDS = 0.3


@dataclass(frozen=True)
class Kind:
    name: str
    stream: Stream
    account: Account
    # The rooms the load keeps books of on each socket of this kind.
    rooms: list[str]
    # Subscriptions the server counts per socket.
    subscriptions: int
    followed_rooms: int
    sockets: int


async def idle_cpu_percent(target: Target, options: Options) -> float:
    """The server's CPU, in % of one core, over a window with nothing sent: what the
    open sockets cost by themselves (an account stream re-reads its rooms every
    ``PLOP_MEMBERSHIP_CHECK_SECONDS``, 10 s by default: the window spans one period)."""
    window = SMOKE_IDLE_WINDOW_SECONDS if options.smoke else IDLE_WINDOW_SECONDS
    before = target.server.cpu_seconds()
    # The cost of a stretch of time: there is no event to wait for.
    await asyncio.sleep(window)
    return round((target.server.cpu_seconds() - before) / window * 100, 1)


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per socket."""
    count = len(points)
    if count < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if not spread:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


async def _settled_rss(target: Target, options: Options) -> int:
    # Freed buffers and the allocator's arenas settle after a step; nothing signals it.
    await asyncio.sleep(SMOKE_SETTLE_SECONDS if options.smoke else SETTLE_SECONDS)
    return target.server.rss_bytes()


async def _open_kind(
    target: Target, pool: LoadPool, kind: Kind, options: Options, last_seq: dict[str, int]
) -> dict[str, Any]:
    total = kind.sockets
    steps = SMOKE_STEPS if options.smoke else STEPS
    base_subscriptions = await target.subscriptions()
    points = [(0, await _settled_rss(target, options))]
    opened = failed = 0
    for step in range(1, steps + 1):
        upto = total * step // steps
        count = upto - opened
        plans = [
            Plan(kind.account.token, room, last_seq[room])
            for _ in range(count)
            for room in kind.rooms
        ]
        reply = await pool.open(
            target.ws_urls,
            plans,
            per_socket=len(kind.rooms),
            concurrency=CONNECT_CONCURRENCY,
            attempts=OPEN_ATTEMPTS,
            stream=kind.stream,
        )
        opened += reply["sockets"] - reply["failed_sockets"]
        failed += reply["failed_sockets"]
        await target.wait_subscriptions(
            base_subscriptions + opened * kind.subscriptions, STEP_TIMEOUT_SECONDS
        )
        points.append((opened, await _settled_rss(target, options)))
    per_socket = slope(points)
    return {
        "kind": kind.name,
        "followed_rooms": kind.followed_rooms,
        "sockets": opened,
        "failed_sockets": failed,
        "bytes_per_socket": round(per_socket),
        "kib_per_socket": round(per_socket / 1024, 1),
        "points": [(count, round(rss / 2**20, 1)) for count, rss in points],
    }


async def measure(
    target: Target, narrow: Account, wide: Account, options: Options
) -> dict[str, Any]:
    """The memory per socket of each kind; ``narrow`` and ``wide`` are accounts in
    no room yet (they create theirs: one, and ``followed_rooms``)."""
    (narrow_room,) = await account_layout.own_rooms(target, narrow, 1)
    wide_rooms = await account_layout.own_rooms(target, wide, options.followed_rooms)
    checked_wide = [wide_rooms[0], wide_rooms[-1]]
    sockets = options.memory_sockets
    kinds = [
        Kind("idle socket, no subscription", "none", narrow, [narrow_room], 0, 0, sockets),
        Kind("one messageAdded", "rooms", narrow, [narrow_room], 1, 1, sockets),
        Kind("one events, account in 1 room", "account", narrow, [narrow_room], 1, 1, sockets),
        Kind(
            f"one events, account in {len(wide_rooms):,} rooms",
            "account",
            wide,
            checked_wide,
            1,
            len(wide_rooms),
            max(1, sockets // 8),
        ),
    ]
    senders = [Sender(target, narrow, [narrow_room]), Sender(target, wide, checked_wide)]
    # A first message in each room the sockets are checked on: they start mid-history.
    await asyncio.gather(*(sender.wave() for sender in senders))
    last_seq = {room: seq for sender in senders for room, seq in sender.last_seq.items()}
    pool = LoadPool(1)
    try:
        rows = [await _open_kind(target, pool, kind, options, last_seq) for kind in kinds]
        idle_cpu = await idle_cpu_percent(target, options)
        await pool.all("round")
        await asyncio.gather(*(sender.wave() for sender in senders))
        expected = {room: seq for sender in senders for room, seq in sender.last_seq.items()}
        merged = merge_rounds(
            await pool.all("wait", {"expected": expected, "within": VERIFY_TIMEOUT_SECONDS})
        )
    finally:
        await pool.close()
        await asyncio.gather(*(sender.close() for sender in senders))
        await target.wait_no_subscriptions()
    narrow_events, wide_events = rows[2], rows[3]
    extra_rooms = wide_events["followed_rooms"] - narrow_events["followed_rooms"]
    per_room = wide_events["bytes_per_socket"] - narrow_events["bytes_per_socket"]
    send_errors = [error for sender in senders for error in sender.errors]
    return {
        "target": target.label,
        "sockets_per_kind": options.memory_sockets,
        "wide_sockets": kinds[-1].sockets,
        "followed_rooms": len(wide_rooms),
        "kinds": rows,
        "kib_per_socket_following": wide_events["kib_per_socket"],
        # With every socket of every kind open and nothing sent.
        "idle_cpu_percent": idle_cpu,
        "bytes_per_followed_room": round(per_room / extra_rooms) if extra_rooms else None,
        "verify": {
            "subscribers": merged["subscribers"],
            # One message in each room a subscribed socket keeps books of.
            "expected_deliveries": sum(
                kind.sockets * len(kind.rooms) for kind in kinds if kind.stream != "none"
            ),
            "deliveries": merged["deliveries"],
            "lost": merged["lost"],
            "duplicates": merged["duplicates"],
            "reordered": merged["reordered"],
            "errors": merged["error_count"] + len(send_errors),
            "error_samples": (merged["errors"] + send_errors)[:5],
            "other_events": merged["other_events"],
            "failed_sockets": sum(row["failed_sockets"] for row in rows),
        },
    }
