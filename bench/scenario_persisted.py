"""persisted: sendMessage with its text, and by its persisted query's hash alone.

The same closed loop as ``send`` (each concurrent sender on its own keep-alive
connection and in its own room), run twice on one server: once sending the
document's text, as ``send`` does, and once sending only
``extensions.persistedQuery`` (Apollo's automatic persisted queries) after one
registration. Reported per send: the request body's bytes (the headers, the same in
both, are left out), Plop's CPU and the rate.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx
from matplotlib.figure import Figure

from bench.common import Options, Sender, message_text, plop_target
from bench.report import Plot, Report, Table, ratio, summed
from bench.scenario_send import WARMUP_MESSAGES, closed_loop
from bench.targets import SEND_MESSAGE, Account, Target

SEND_HASH = hashlib.sha256(SEND_MESSAGE.encode()).hexdigest()
PERSISTED = {"persistedQuery": {"version": 1, "sha256Hash": SEND_HASH}}
TEXT, HASH = "text", "hash"


@dataclass
class PersistedTarget(Target):
    """Plop, sent sendMessage by its hash alone."""

    @staticmethod
    def send_body(room: str, text: str, client_id: str) -> bytes:
        variables = {"roomId": room, "text": text, "clientId": client_id}
        return json.dumps({"extensions": PERSISTED, "variables": variables}).encode()


async def register(target: Target, account: Account) -> None:
    """Registers the sendMessage document once (its text with its hash), as Apollo's
    link does after its first miss; the error it answers (no such room) runs nothing
    of the bench's."""
    body = {
        "query": SEND_MESSAGE,
        "extensions": PERSISTED,
        "variables": {"roomId": "000000000000000000000000", "text": "x"},
    }
    headers = {"authorization": f"Bearer {account.token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        answer = (
            await client.post(f"{target.server.base_urls[0]}/graphql", json=body, headers=headers)
        ).json()
    codes = [error.get("extensions", {}).get("code") for error in answer.get("errors", [])]
    if any(code and code.startswith("PERSISTED_QUERY") for code in codes):
        raise RuntimeError(f"the server did not take the persisted query: {answer}")


async def _measure(
    target: Target,
    options: Options,
    accounts: list[Account],
    rooms: list[str],
    last_seq: dict[str, int],
) -> list[dict[str, Any]]:
    """The figures of one sender per room, sending the text, then the hash alone, into
    the same rooms; ``last_seq`` holds each room's last seq, across levels."""
    level = len(rooms)
    rows = []
    for mode, sending in ((TEXT, target), (HASH, _by_hash(target))):
        senders = [
            Sender(sending, accounts[index % len(accounts)], [rooms[index]], last_seq)
            for index in range(level)
        ]
        warm_up = 1 if options.smoke else WARMUP_MESSAGES
        try:
            figures = await closed_loop(
                sending, senders, options.duration, options.max_requests, warm_up
            )
        finally:
            await asyncio.gather(*(sender.close() for sender in senders))
            for sender in senders:
                last_seq.update(sender.last_seq)
        # A send's body as the senders build it (text and client id of fixed length).
        body = sending.send_body(rooms[0], message_text(), "0" * 16)
        rows.append(
            {
                "target": target.label,
                "mode": mode,
                "concurrency": level,
                "request_body_bytes": len(body),
                **figures,
            }
        )
    return rows


def _by_hash(target: Target) -> PersistedTarget:
    return PersistedTarget(target.kind, f"{target.label}, by hash", target.server)


async def _run_backend(options: Options, backend: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with plop_target(options, backend) as plop:
        population = await plop.populate(
            max(1, min(max(options.concurrency), options.users)), max(options.concurrency)
        )
        await register(plop, population.accounts[0])
        last_seq: dict[str, int] = {}
        for level in options.concurrency:
            rows += await _measure(
                plop, options, population.accounts, population.rooms[:level], last_seq
            )
    return rows


async def run(options: Options) -> Report:
    rows: list[dict[str, Any]] = []
    for backend in options.backends:
        rows += await _run_backend(options, backend)
    by_text = {(r["target"], r["concurrency"]): r for r in rows if r["mode"] == TEXT}
    for row in rows:
        reference = by_text[(row["target"], row["concurrency"])]
        row["ratio_body_bytes"] = ratio(row["request_body_bytes"], reference["request_body_bytes"])
        row["ratio_cpu"] = (
            ratio(row["server_cpu_us_per_request"], reference["server_cpu_us_per_request"])
            if row["server_cpu_us_per_request"] and reference["server_cpu_us_per_request"]
            else None
        )
    report = Report(
        scenario="persisted",
        title="sendMessage by its text and by its persisted query's hash",
        argv=options.argv,
        parameters={
            "concurrency": options.concurrency,
            "duration_seconds": options.duration,
            "max_requests": options.max_requests,
            "backends": options.backends,
            "users": options.users,
            "smoke": options.smoke,
        },
        data={"rows": rows},
    )
    report.checks = summed(rows, "requests", "answered", "errors", "seq_gaps")
    report.tables.append(
        Table(
            "Bytes and CPU per send (ratios: to the same server sending the text)",
            [
                "server",
                "sent",
                "concurrency",
                "body bytes/send",
                "vs text",
                "req/s",
                "server CPU µs/req",
                "vs text",
                "p50 ms",
                "p99 ms",
                "machine busy",
                "errors",
            ],
            [
                [
                    row["target"],
                    row["mode"],
                    row["concurrency"],
                    row["request_body_bytes"],
                    row["ratio_body_bytes"],
                    row["per_second"],
                    row["server_cpu_us_per_request"],
                    row["ratio_cpu"],
                    row["p50_ms"],
                    row["p99_ms"],
                    f"{row['machine_cpu_busy_share']:.0%}",
                    row["errors"],
                ]
                for row in rows
            ],
        )
    )
    report.notes += [
        "Both modes run on the same server process, one after the other, each sender on "
        "its own keep-alive connection and in its own room; 'hash' sends "
        "extensions.persistedQuery and no query, after one registration.",
        "Body bytes are the JSON request body's; the request line and headers (with "
        "the bearer token) are the same in both modes, and so is the answer.",
        f"Each level runs {options.duration:g} s or {options.max_requests:,} requests per mode.",
    ]

    def per_send(figure: Figure) -> None:
        axes = figure.add_subplot(1, 1, 1)
        labels = [f"{r['target']} c={r['concurrency']}" for r in rows if r["mode"] == TEXT]
        for offset, mode in ((-0.2, TEXT), (0.2, HASH)):
            values = [r["server_cpu_us_per_request"] or 0 for r in rows if r["mode"] == mode]
            axes.bar(
                [index + offset for index in range(len(values))], values, width=0.4, label=mode
            )
        axes.set_xticks(range(len(labels)), labels, fontsize="small")
        axes.set(ylabel="server CPU µs per send", title="sendMessage: text or hash")
        axes.legend(fontsize="small")

    report.plots.append(Plot("cpu", per_send))
    return report
