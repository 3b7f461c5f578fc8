"""The capacity model of docs/scaling.md, from the scale scenario's per-instance figures.

An instance's CPU, as a share of one core, for N instances holding M sockets in all,
while the cluster carries R room events a second that reach f sockets each on
average (a share p of the events has a follower on the instance):

    share = R x (c_event + p x c_served)      every instance consumes every event
          + (R x f / N) x c_delivery          its share of the deliveries
          + (R / N) x c_send                  its share of the sends
          + (M / N) x c_socket                its open sockets, idle

c_event is what an instance pays for an event nobody on it follows (read from Kafka,
dropped by its key); c_served what an event it serves costs beyond that (decoded,
rendered once for all its followers there); c_delivery each socket's frame; c_send a
sendMessage; c_socket an open socket's CPU a second. The first term does not shrink
with N: it is what limits a cluster that consumes every event everywhere.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# The share of an instance that consuming every event may take before a second tier
# (events routed to the instances that serve them) pays for itself.
CONSUME_LIMIT_SHARE = 0.2


def per_second(cpu_seconds: float, seconds: float) -> float:
    return cpu_seconds / seconds if seconds > 0 else 0.0


def net_cpu(cpu_seconds: float, idle_rate: float, seconds: float) -> float:
    """CPU seconds beyond what the instance spends idle over the same time."""
    return cpu_seconds - idle_rate * seconds


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (intercept, slope) of y over x; None without two distinct x."""
    if len(points) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread <= 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return mean_y - slope * mean_x, slope


@dataclass(frozen=True)
class Costs:
    """CPU per unit, in µs (c_socket: µs a second per open socket)."""

    event_us: float
    served_us: float
    delivery_us: float
    send_us: float
    socket_us_per_second: float


@dataclass(frozen=True)
class Load:
    instances: int
    sockets: int
    rate: float  # room events a second, over the whole cluster
    fanout: float  # sockets each event reaches, on average
    followed_share: float = 1.0  # events with a follower on the instance


def shares(costs: Costs, load: Load) -> dict[str, float]:
    """One instance's share of a core, term by term, and their total."""
    n = load.instances
    parts = {
        "consume": load.rate * (costs.event_us + load.followed_share * costs.served_us) / 1e6,
        "deliver": load.rate * load.fanout / n * costs.delivery_us / 1e6,
        "send": load.rate / n * costs.send_us / 1e6,
        "sockets": load.sockets / n * costs.socket_us_per_second / 1e6,
    }
    parts["total"] = sum(parts.values())
    return parts


def consume_limit_rate(
    costs: Costs, followed_share: float, limit: float = CONSUME_LIMIT_SHARE
) -> float | None:
    """The event rate at which consuming every event takes ``limit`` of an instance;
    None when the figures give an event no cost (a run too small to measure it)."""
    per_event = costs.event_us + followed_share * costs.served_us
    return round(limit / (per_event / 1e6)) if per_event > 0 else None


def instances_for(costs: Costs, load: Load, budget: float) -> int | None:
    """The fewest instances (up to 4,096) that keep each under ``budget`` of a core at
    ``load``'s rate and sockets; None if the consuming alone passes the budget."""
    for n in range(1, 4097):
        if (
            shares(costs, Load(n, load.sockets, load.rate, load.fanout, load.followed_share))[
                "total"
            ]
            <= budget
        ):
            return n
    return None


def followed_share(members_online: float, instances: int) -> float:
    """The chance that an instance holds a socket of a room whose ``members_online``
    sockets were placed at random over ``instances``."""
    if instances <= 1:
        return 1.0
    missed: float = (1.0 - 1.0 / instances) ** members_online
    return 1.0 - missed


def median(values: Sequence[float | None]) -> float | None:
    """The median of the figures there are; None if there are none."""
    kept: list[float] = [float(value) for value in values if value is not None]
    return round(float(statistics.median(kept)), 2) if kept else None
