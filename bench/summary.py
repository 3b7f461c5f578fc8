"""The headline figures of ``plop bench all``: each target of the benchmark table, read
from the scenarios' JSON documents of every run, as a median with its spread.

A ``Headline`` names one figure: where it is in a scenario's document, what it is
compared with (the raw baseline or Centrifugo of the same run), the target, and
whether the median meets it. Ratios are taken within each run (figures of one run
share the machine's load), then summarised over the runs.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.centrifugo import LABEL as CENTRIFUGO
from bench.scenario_hot import HOT_FANOUT_SENDERS, MAX_P99_RATIO, MIN_STORED_RATIO, SPREAD

Document = dict[str, Any]
RAW = "raw FastAPI"
ONE_ROOM = "one room"
# The full table's place in docs/benchmarks.md, and the headline table's in the README.
SUMMARY_MARKERS = ("<!-- bench:summary:start -->", "<!-- bench:summary:end -->")
HEADLINE_MARKERS = ("<!-- bench:headline:start -->", "<!-- bench:headline:end -->")
# The README's ten rows, in this order: one per target a newcomer asks about first.
HEADLINE_KEYS = (
    "send_per_second_c64_real",
    "send_cpu_ms_c64_real",
    "send_per_second_c16_embedded",
    "stored_latency_ratio_embedded",
    "open_seconds_5000_real",
    "reconnect_caught_up_real",
    "fanout_deliveries_5000_real",
    "fanout_cpu_5000_centrifugo",
    "fanout_p99_1000_paced",
    "idle_kib_per_connection",
)


@dataclass(frozen=True)
class Pair:
    """One run's figure and the figure it is compared with (None: not measured)."""

    value: float | None
    reference: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.reference:
            return None
        return self.value / self.reference


@dataclass(frozen=True)
class Headline:
    key: str
    measure: str
    scenario: str
    read: Callable[[Document], Pair]
    reference: str  # what ``Pair.reference`` is: "raw", "Centrifugo", "1 instance", ...
    target: str
    # On the medians (value, ratio): met, missed, or None when the target is not one.
    met: Callable[[float | None, float | None], bool | None]
    digits: int = 1


def _rows(document: Document, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = document.get("results", {}).get(key, [])
    return rows


def _by_target(document: Document, key: str) -> dict[str, dict[str, Any]]:
    return {row["target"]: row for row in _rows(document, key)}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _send_row(document: Document, target: str, concurrency: int) -> dict[str, Any]:
    for row in _rows(document, "rows"):
        if row["target"] == target and row["concurrency"] == concurrency:
            return row
    return {}


def send_pair(
    target: str, concurrency: int, field: str, reference: str = RAW
) -> Callable[[Document], Pair]:
    def read(document: Document) -> Pair:
        mine = _send_row(document, target, concurrency).get(field)
        theirs = _send_row(document, reference, concurrency).get(field)
        return Pair(_number(mine), _number(theirs))

    return read


def _fanout(document: Document, target: str, subscribers: int) -> dict[str, Any]:
    for config in _rows(document, "configs"):
        if (
            config["target"] == target
            and config["subscribers"] == subscribers
            and config.get("layout", ONE_ROOM) == ONE_ROOM
        ):
            return config
    return {}


def fanout_pair(
    target: str, subscribers: int, phase: str | None, field: str, reference: str = RAW
) -> Callable[[Document], Pair]:
    """A fan-out figure (of ``phase``, or of the set-up when None) beside the
    reference server's, same subscribers, one room."""

    def read(document: Document) -> Pair:
        def figure(config: dict[str, Any]) -> float | None:
            if not config:
                return None
            return _number((config[phase] if phase else config).get(field))

        mine = figure(_fanout(document, target, subscribers))
        theirs = figure(_fanout(document, reference, subscribers))
        return Pair(mine, theirs)

    return read


def idle_memory_pair(target: str, reference: str = RAW) -> Callable[[Document], Pair]:
    def read(document: Document) -> Pair:
        rows = _by_target(document, "idle")
        mine = rows.get(target, {}).get("kib_per_idle_subscription")
        theirs = rows.get(reference, {}).get("kib_per_idle_subscription")
        return Pair(_number(mine), _number(theirs))

    return read


def memory_after_close(target: str) -> Callable[[Document], Pair]:
    """RSS after closing every socket, beside RSS with them all open."""

    def read(document: Document) -> Pair:
        rows = _by_target(document, "idle")
        row = rows.get(target, {})
        return Pair(_number(row.get("rss_mb_after_close")), _number(row.get("rss_mb_at_most")))

    return read


def reconnect_pair(
    target: str, field: str, reference_field: str | None = None
) -> Callable[[Document], Pair]:
    def read(document: Document) -> Pair:
        rows = _by_target(document, "rows")
        row = rows.get(target, {})
        reference = row.get(reference_field) if reference_field else None
        return Pair(_number(row.get(field)), _number(reference))

    return read


def reconnect_to_raw_reopen(target: str) -> Callable[[Document], Pair]:
    """Plop's catch-up after a reconnect storm, beside the time the raw baseline took
    to reopen the same sockets in the same run."""

    def read(document: Document) -> Pair:
        rows = _by_target(document, "rows")
        raw = document.get("results", {}).get("raw_reopen") or {}
        mine = rows.get(target, {}).get("caught_up_seconds")
        return Pair(_number(mine), _number(raw.get("reconnect_seconds")))

    return read


def _hot_pairs(document: Document, target: str | None, field: str) -> list[Pair]:
    """The hot scenario: each one-room row's figure beside its spread row's (same
    server, same C), for ``target`` or every server."""
    rows = _rows(document, "rows")
    spread = {(row["target"], row["concurrency"]): row for row in rows if row["layout"] == SPREAD}
    pairs = []
    for row in rows:
        reference = spread.get((row["target"], row["concurrency"]))
        if row["layout"] != ONE_ROOM or reference is None or target not in (None, row["target"]):
            continue
        pairs.append(Pair(_number(row.get(field)), _number(reference.get(field))))
    return pairs


def hot_pair(target: str | None, field: str, highest: bool = False) -> Callable[[Document], Pair]:
    """The one room beside the spread layout at the level whose ratio is the worst:
    the lowest (or, with ``highest``, the highest) over the levels."""

    def read(document: Document) -> Pair:
        known = [pair for pair in _hot_pairs(document, target, field) if pair.ratio is not None]
        if not known:
            return Pair(None)
        choose = max if highest else min
        return choose(known, key=lambda pair: pair.ratio or 0.0)

    return read


def hot_unavailable(document: Document) -> Pair:
    """UNAVAILABLE answers over the hot scenario's levels, beside its stored sends."""
    checks = document.get("checks", {})
    return Pair(_number(checks.get("unavailable")), _number(checks.get("stored")))


def hot_fanout_not_once(target: str) -> Callable[[Document], Pair]:
    """Deliveries of the many-sender fan-out rows not made exactly once in order
    (lost, duplicated, reordered), beside the deliveries expected."""

    def read(document: Document) -> Pair:
        for config in _rows(document, "fanout"):
            if config["target"] == target and config["senders"] > 1:
                phases = [config["burst"], config["paced"]]
                broken = sum(p["lost"] + p["duplicates"] + p["reordered"] for p in phases)
                return Pair(float(broken), float(sum(p["expected_deliveries"] for p in phases)))
        return Pair(None)

    return read


def at_least(limit: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda value, _ratio: None if value is None else value >= limit


def at_most(limit: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda value, _ratio: None if value is None else value <= limit


def ratio_at_least(limit: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda _value, ratio: None if ratio is None else ratio >= limit


def ratio_at_most(limit: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda _value, ratio: None if ratio is None else ratio <= limit


def no_target(_value: float | None, _ratio: float | None) -> bool | None:
    return None


PLOP_REAL = "Plop (real)"
PLOP_EMBEDDED = "Plop (embedded)"
PLOP_TWO = "Plop (real, 2 instances)"

HEADLINES: list[Headline] = [
    Headline(
        "send_per_second_c64_real",
        "sendMessage/s, concurrency 64, real services",
        "send",
        send_pair(PLOP_REAL, 64, "per_second"),
        "raw POST",
        "≥ 400/s",
        at_least(400),
    ),
    Headline(
        "send_cpu_ms_c64_real",
        "server CPU per sendMessage, concurrency 64, real services (ms)",
        "send",
        lambda d: _scaled(send_pair(PLOP_REAL, 64, "server_cpu_us_per_request")(d), 1e-3),
        "raw POST",
        "≤ 1.5 ms",
        at_most(1.5),
        digits=2,
    ),
    Headline(
        "send_per_second_c64_two_instances",
        "sendMessage/s, concurrency 64, 2 instances vs 1 (real)",
        "send",
        send_pair(PLOP_TWO, 64, "per_second", PLOP_REAL),
        "1 instance",
        "—",
        no_target,
    ),
    Headline(
        "send_per_second_c16_embedded",
        "sendMessage/s, concurrency 16, embedded",
        "send",
        send_pair(PLOP_EMBEDDED, 16, "per_second"),
        "raw POST",
        "≥ 0.2 of raw",
        ratio_at_least(0.2),
    ),
    *(
        Headline(
            f"hot_stored_ratio_{key}",
            f"stored/s, C senders in one room vs C rooms, {where} (worst of C = 16, 64, 256)",
            "hot",
            hot_pair(label, "per_second"),
            "C rooms",
            f"≥ {MIN_STORED_RATIO[instances]:g}x",
            ratio_at_least(MIN_STORED_RATIO[instances]),
        )
        for key, where, label, instances in (
            ("embedded", "embedded", PLOP_EMBEDDED, 1),
            ("real", "real services", PLOP_REAL, 1),
            ("two_instances", "real services, 2 instances", PLOP_TWO, 2),
        )
    ),
    Headline(
        "hot_p99_ratio",
        "send p99, C senders in one room vs C rooms (ms, worst of every C and server)",
        "hot",
        hot_pair(None, "p99_ms", highest=True),
        "C rooms",
        f"≤ {MAX_P99_RATIO:g}x",
        ratio_at_most(MAX_P99_RATIO),
    ),
    Headline(
        "hot_unavailable",
        "UNAVAILABLE answers, C senders in one room and in C rooms (all levels, servers)",
        "hot",
        hot_unavailable,
        "stored",
        "0",
        at_most(0),
        digits=0,
    ),
    Headline(
        "hot_fanout_not_once",
        f"hot room fan-out ({HOT_FANOUT_SENDERS} senders), 1,000 subscribers, 2 instances: "
        "deliveries lost, duplicated or reordered",
        "hot",
        hot_fanout_not_once(PLOP_TWO),
        "expected",
        "0",
        at_most(0),
        digits=0,
    ),
    Headline(
        "stored_latency_ratio_embedded",
        "send p50 into a room of 10,000 stored messages vs an empty room, embedded (ms)",
        "stored",
        lambda d: stored_pair(d, "embedded"),
        "empty room",
        "≤ 1.5x",
        ratio_at_most(1.5),
        digits=2,
    ),
    Headline(
        "open_seconds_5000_real",
        "5,000 subscriptions opened, real services (s)",
        "fanout",
        fanout_pair(PLOP_REAL, 5_000, None, "open_seconds"),
        "raw",
        "≤ 2x raw",
        ratio_at_most(2.0),
    ),
    Headline(
        "reconnect_caught_up_real",
        "2,000-client reconnect storm caught up, real services (s)",
        "reconnect",
        reconnect_to_raw_reopen(PLOP_REAL),
        "raw reopen",
        "≤ 2x raw",
        ratio_at_most(2.0),
    ),
    Headline(
        "reconnect_embedded_caught_up",
        "2,000-client reconnect, embedded: subscribers caught up",
        "reconnect",
        reconnect_pair(PLOP_EMBEDDED, "caught_up", "subscribers"),
        "subscribers",
        "all, 0 lost, 0 dup",
        ratio_at_least(1.0),
        digits=0,
    ),
    *(
        Headline(
            f"fanout_deliveries_{count}_real",
            f"fan-out deliveries/s, {count:,} subscribers, one room, via Kafka",
            "fanout",
            fanout_pair(PLOP_REAL, count, "burst", "deliveries_per_second"),
            "raw",
            "≥ 0.95 of raw",
            ratio_at_least(0.95),
            digits=0,
        )
        for count in (5_000, 10_000)
    ),
    *(
        Headline(
            f"fanout_cpu_{count}_real",
            f"server CPU per delivery, {count:,} subscribers (µs)",
            "fanout",
            fanout_pair(PLOP_REAL, count, "burst", "server_cpu_us_per_delivery"),
            "raw",
            "≤ 1.0x raw",
            ratio_at_most(1.0),
        )
        for count in (5_000, 10_000)
    ),
    Headline(
        "fanout_cpu_5000_centrifugo",
        "server CPU per delivery, 5,000 subscribers, beside Centrifugo (µs)",
        "fanout",
        fanout_pair(PLOP_REAL, 5_000, "burst", "server_cpu_us_per_delivery", CENTRIFUGO),
        "Centrifugo",
        "—",
        no_target,
    ),
    Headline(
        "fanout_deliveries_5000_centrifugo",
        "fan-out deliveries/s, 5,000 subscribers, beside Centrifugo",
        "fanout",
        fanout_pair(PLOP_REAL, 5_000, "burst", "deliveries_per_second", CENTRIFUGO),
        "Centrifugo",
        "—",
        no_target,
        digits=0,
    ),
    Headline(
        "fanout_p99_1000_paced",
        "send-to-receive p99, 1,000 subscribers, paced (ms)",
        "fanout",
        fanout_pair(PLOP_REAL, 1_000, "paced", "p99_ms"),
        "raw",
        "≤ 1.3x raw",
        ratio_at_most(1.3),
    ),
    Headline(
        "fanout_deliveries_5000_two_instances",
        "fan-out deliveries/s, 5,000 subscribers, 2 instances vs 1",
        "fanout",
        fanout_pair(PLOP_TWO, 5_000, "burst", "deliveries_per_second", PLOP_REAL),
        "1 instance",
        "—",
        no_target,
        digits=0,
    ),
    Headline(
        "idle_kib_per_connection",
        "RSS per idle subscribed connection, embedded (KiB)",
        "memory",
        idle_memory_pair(PLOP_EMBEDDED),
        "raw",
        "≤ 40 KiB",
        at_most(40.0),
    ),
    Headline(
        "idle_kib_per_connection_centrifugo",
        "RSS per idle subscribed connection, beside Centrifugo (KiB)",
        "memory",
        idle_memory_pair(PLOP_EMBEDDED, CENTRIFUGO),
        "Centrifugo",
        "—",
        no_target,
    ),
    Headline(
        "rss_after_closing",
        "RSS after 200,000 deliveries and closing every socket vs with them open, embedded (MB)",
        "memory",
        memory_after_close(PLOP_EMBEDDED),
        "sockets open",
        "≤ 1.1x",
        ratio_at_most(1.1),
    ),
]


def _scaled(pair: Pair, factor: float) -> Pair:
    return Pair(
        None if pair.value is None else pair.value * factor,
        None if pair.reference is None else pair.reference * factor,
    )


def stored_pair(document: Document, backend: str) -> Pair:
    """The stored-history scenario: p50 send latency into the room holding the
    stored messages, beside the same into an empty room, measured turn by turn."""
    for row in _rows(document, "rows"):
        if row.get("target") == f"Plop ({backend})":
            full, beside = row.get("full", {}), row.get("beside_full", {})
            return Pair(_number(full.get("p50_ms")), _number(beside.get("p50_ms")))
    return Pair(None)


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread | None:
        known = [value for value in values if value is not None]
        if not known:
            return None
        return cls(statistics.median(known), min(known), max(known), len(known))

    def as_json(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}


def summarise(runs: list[dict[str, Document]]) -> list[dict[str, Any]]:
    """Each headline over the runs (each run: scenario name -> its document)."""
    rows = []
    for headline in HEADLINES:
        pairs = [headline.read(run[headline.scenario]) for run in runs if headline.scenario in run]
        value = Spread.of([pair.value for pair in pairs])
        reference = Spread.of([pair.reference for pair in pairs])
        ratio = Spread.of([pair.ratio for pair in pairs])
        met = headline.met(value.median if value else None, ratio.median if ratio else None)
        rows.append(
            {
                "key": headline.key,
                "scenario": headline.scenario,
                "measure": headline.measure,
                "reference": headline.reference,
                "target": headline.target,
                "value": value.as_json() if value else None,
                "reference_value": reference.as_json() if reference else None,
                "ratio": ratio.as_json() if ratio else None,
                "met": met,
                "digits": headline.digits,
            }
        )
    return rows


def _figure(spread: dict[str, Any] | None, digits: int) -> str:
    if spread is None:
        return "not measured"

    def show(number: float) -> str:
        return f"{number:,.{digits}f}"

    text = show(spread["median"])
    if spread["runs"] > 1:
        text += f" ({show(spread['min'])}-{show(spread['max'])})"
    return text


def headline_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``HEADLINE_KEYS``, in its order (those measured)."""
    by_key = {row["key"]: row for row in rows}
    return [by_key[key] for key in HEADLINE_KEYS if key in by_key]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A table of headline rows: each figure's median over its runs, min-max in brackets."""
    lines = [
        "Each figure is the median of its runs, (min-max) over them; each ratio is "
        "taken within a run, between figures measured side by side.",
        "",
        "| measure | Plop | compared with | its figure | ratio | target | met | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = {True: "yes", False: "no", None: "—"}[row["met"]]
        runs = (row["value"] or row["reference_value"] or {}).get("runs", 0)
        lines.append(
            "| "
            + " | ".join(
                [
                    row["measure"],
                    _figure(row["value"], row["digits"]),
                    row["reference"],
                    _figure(row["reference_value"], row["digits"]),
                    _figure(row["ratio"], 2),
                    row["target"],
                    met,
                    str(runs),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def carried_over(
    fresh: list[dict[str, Any]], previous: list[dict[str, Any]], ran: set[str]
) -> list[dict[str, Any]]:
    """This run's rows of the scenarios it ran; the others as the previous summary
    had them (their own runs and spread), or this run's reading of the latest files."""
    earlier = {row["key"]: row for row in previous}
    return [
        row if row["scenario"] in ran or row["key"] not in earlier else earlier[row["key"]]
        for row in fresh
    ]


def replace_between(path: Path, markers: tuple[str, str], table: str) -> None:
    """Puts ``table`` between the file's markers (which must be there)."""
    start_marker, end_marker = markers
    text = path.read_text()
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no {start_marker} ... {end_marker} block")
    head = text[: start + len(start_marker)]
    path.write_text(head + "\n" + table + text[end:])


def load_documents(folder: Path) -> dict[str, Document]:
    """The scenario documents a run wrote into ``folder``."""
    documents = {}
    for path in sorted(folder.glob("*.json")):
        if path.name == "summary.json":
            continue
        document = json.loads(path.read_text())
        if isinstance(document, dict) and "scenario" in document:
            documents[document["scenario"]] = document
    return documents
