"""The scale scenario in smoke mode, and the capacity model's arithmetic.

The scenario runs as users run it (``python -m bench scale --smoke``: 1 and 2
instances on the real services, a few sockets and messages). What is checked is its
bookkeeping (every follower got every message once, every instance read every
published event) and that every figure it reports is there; the CPU figures of so
small a run are within the machine's noise, so none is compared with anything.
"""

from __future__ import annotations

import math
from typing import Any

from bench.load import Plan
from bench.scale_layout import ScaleLayout
from bench.scale_model import (
    Costs,
    Load,
    consume_limit_rate,
    fit_line,
    followed_share,
    instances_for,
    shares,
)
from bench.targets import Account
from tests.test_bench import run_bench

# Figures of a row that count things: each must be above zero in any run.
COUNTED = (
    "sockets",
    "consumed_events",
    "consume_seconds",
    "events_consumed_per_second",
    "deliver_events_decoded",
    "deliver_events_per_second",
    "deliveries",
    "deliveries_per_second",
    "deliveries_per_event",
    "rss_mb_end",
)
# Figures of a row that are CPU or memory beyond an idle level: measured, so a number,
# but a tiny run may see them at or under zero.
MEASURED = (
    "rss_kib_per_socket",
    "idle_cpu_percent",
    "idle_cpu_percent_with_sockets",
    "cpu_us_per_socket_second",
    "cpu_us_per_consumed_event",
    "deliver_cpu_percent",
    "deliver_net_cpu_seconds",
    "cpu_us_per_delivery",
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_scale_smoke_keeps_its_books_on_one_and_two_instances(tmp_path: Any) -> None:
    document = run_bench(tmp_path, "scale")
    parameters = document["parameters"]
    assert parameters["instances"] == [1, 2]
    sockets = parameters["sockets"]
    groups = document["results"]["groups"]
    assert [group["instances"] for group in groups] == [1, 2]
    for group in groups:
        assert group["opened"] == sockets
        assert group["failed_sockets"] == group["send_errors"] == group["seq_gaps"] == 0
        assert group["sent"] > 0
        for phase in ("warm_up", "deliver"):
            books = group[phase]
            # deliveries = followers x messages of their rooms, each once.
            assert books["deliveries"] == books["expected_deliveries"] > 0
            assert books["lost"] == books["duplicates"] == books["reordered"] == 0
            assert books["beyond_expected"] == books["errors"] == 0
        # The sockets are spread evenly, and each instance's deliveries add up.
        rows = group["rows"]
        assert len(rows) == group["instances"]
        assert {row["sockets"] for row in rows} == {sockets // group["instances"]}
        assert sum(row["deliveries"] for row in rows) == group["deliver"]["expected_deliveries"]
        # Every instance, the front included, read every published event.
        assert group["every_instance_consumed_every_event"] is True
        assert group["front"]["consumed_events"] == group["published_events"]
        assert _number(group["front"]["cpu_us_per_send"])
        for row in rows:
            assert row["consumed_events"] == group["published_events"]
            # Each instance follows every room here: it decoded every message sent.
            assert row["deliver_events_decoded"] >= group["sent"]
            for name in COUNTED:
                assert _number(row[name]) and row[name] > 0, (name, row[name])
            for name in MEASURED:
                assert _number(row[name]), (name, row[name])
        for window in group["machine"].values():
            assert window["seconds"] > 0
            assert _number(window["busy_share"])
            assert len(window["load_average_1_5_15"]) == 3
    model = document["results"]["model"]
    for name in ("cpu_us_per_consumed_event", "cpu_us_per_send", "cpu_us_per_socket_second"):
        assert _number(model[name]), name
    # Three instances over two groups, at two different deliveries per event: a line fits.
    assert len(model["fit_points"]) == 3
    assert _number(model["fit_cpu_us_per_delivery"])
    projection = document["results"]["projection"]
    assert len(projection) == 5 * 2 * 3
    checks = document["checks"]
    assert checks["deliveries"] == checks["expected_deliveries"]
    assert checks["lost"] == checks["duplicates"] == checks["failed"] == 0


def test_the_layout_spreads_sockets_and_each_rooms_followers_over_the_instances() -> None:
    accounts = [Account(f"t{user}", f"u{user}") for user in range(2)]
    layout = ScaleLayout(accounts, ["r0", "r1", "r2", "r3"])
    shares_of = layout.plans(16, 2, dict.fromkeys(layout.rooms, 7))
    assert [len(share) for share in shares_of] == [8, 8]
    for share in shares_of:
        # Every instance holds two followers of every room, each with its owner's token.
        assert sorted(index for index, _ in share) == [0, 0, 1, 1, 2, 2, 3, 3]
        for index, plan in share:
            assert plan == Plan(accounts[index % 2].token, layout.rooms[index], 7)


def test_a_line_fits_exact_points_and_needs_two_distinct_x() -> None:
    assert fit_line([(1.0, 12.0), (2.0, 17.0), (4.0, 27.0)]) == (7.0, 5.0)
    assert fit_line([(2.0, 1.0), (2.0, 3.0)]) is None
    assert fit_line([(1.0, 1.0)]) is None


def test_an_instance_pays_for_every_event_whatever_the_instances() -> None:
    costs = Costs(
        event_us=2.0, served_us=20.0, delivery_us=40.0, send_us=5_000.0, socket_us_per_second=1.0
    )
    one = shares(costs, Load(1, 10_000, 1_000.0, 10.0))
    four = shares(costs, Load(4, 10_000, 1_000.0, 10.0))
    assert one["consume"] == four["consume"] == 1_000 * 22 / 1e6
    assert four["deliver"] == one["deliver"] / 4 == 1_000 * 10 / 4 * 40 / 1e6
    assert four["send"] == one["send"] / 4
    assert four["sockets"] == 10_000 / 4 * 1 / 1e6
    assert math.isclose(four["total"], sum(v for k, v in four.items() if k != "total"))
    # 20% of a core on consuming: 0.2 / 22 µs (all served), 0.2 / 2 µs (none served).
    assert consume_limit_rate(costs, 1.0) == round(0.2 / 22e-6)
    assert consume_limit_rate(costs, 0.0) == 100_000
    free = Costs(0.0, 0.0, 1.0, 1.0, 1.0)
    assert consume_limit_rate(free, 1.0) is None
    # More instances bring each under budget until consuming alone passes it.
    needed = instances_for(costs, Load(1, 10_000, 1_000.0, 10.0), 0.5)
    assert needed is not None
    n = needed
    assert shares(costs, Load(n, 10_000, 1_000.0, 10.0))["total"] <= 0.5
    assert shares(costs, Load(n - 1, 10_000, 1_000.0, 10.0))["total"] > 0.5
    assert instances_for(costs, Load(1, 10_000, 30_000.0, 10.0), 0.5) is None
    assert followed_share(2, 1) == 1.0
    assert followed_share(2, 2) == 0.75
