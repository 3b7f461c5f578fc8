"""search: how long searchMessages takes in one big room and across many rooms.

On the real services (FerretDB 1.24 on PostgreSQL): one user in one room of
``--messages`` messages (100,000) and in ``--rooms`` more rooms (200) of
``--room-messages`` each (500). The messages are written straight to the database,
as the send path stores them (with their search tokens), since 200,000 sendMessage
calls would take most of an hour here. Their texts are words of a made-up vocabulary
drawn by Zipf's law, as the words of a language are, so that one query's word is
rare, another common, a third asks for two words at once.

Each query is then searched ``--max-requests`` times, one at a time: in the big room,
and across every room of the user (the big one too). Every answer's first page is
checked against the page computed from the texts written: that is the bookkeeping
(``wrong_results``), never a timing. The report names the server's plan for both
query shapes (``explain``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from beanie import PydanticObjectId
from bson import ObjectId
from matplotlib.figure import Figure
from pymongo import AsyncMongoClient

from bench.common import Options, plop_target
from bench.rawhttp import HttpConnection, HttpError
from bench.report import Plot, Report, Table, latency_summary, summed
from bench.targets import Account, Target
from devtools.services import start_real_services
from services.message_search import ORDER, search_steps
from services.search_tokens import query_tokens
from services.search_windows import search_fields

VOCABULARY = 5_000
WORDS_PER_MESSAGE = 8
PAGE = 20
INSERT_BATCH = 1_000
SEED = 20_261_207
# The messages' send times spread evenly over this much of the past.
SPREAD = timedelta(days=30)
# Query words by their rank in the vocabulary (0 is the most used).
QUERIES = {
    "rare word": (3_000,),
    "common word": (2,),
    "two words": (20, 200),
}
_CONSONANTS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = len(_CONSONANTS) * len(_VOWELS)

SEARCH = """
query($q: String!, $r: ID, $first: Int) {
  searchMessages(query: $q, roomId: $r, first: $first) { edges { node { roomId seq } } }
}
"""


def word(rank: int) -> str:
    """The made-up word of that rank: two syllables or more, one word per rank."""
    letters = []
    number = rank + _SYLLABLES
    while number:
        number, syllable = divmod(number, _SYLLABLES)
        letters.append(_CONSONANTS[syllable // len(_VOWELS)] + _VOWELS[syllable % len(_VOWELS)])
    return "".join(letters)


def texts(count: int, rng: random.Random) -> Iterator[str]:
    """``count`` texts of words drawn by Zipf's law."""
    weights = list(accumulate(1 / (rank + 1) for rank in range(VOCABULARY)))
    ranks = rng.choices(range(VOCABULARY), cum_weights=weights, k=count * WORDS_PER_MESSAGE)
    for start in range(0, len(ranks), WORDS_PER_MESSAGE):
        yield " ".join(word(rank) for rank in ranks[start : start + WORDS_PER_MESSAGE])


class Written:
    """What was written, in the order of its creation times: (room, seq, tokens)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int, frozenset[str]]] = []

    def first_page(self, tokens: list[str], room: str | None) -> list[list[object]]:
        """The newest ``PAGE`` messages holding every token, in the room or in all."""
        wanted = set(tokens)
        found: list[list[object]] = []
        for room_id, seq, held in reversed(self.messages):
            if (room is None or room_id == room) and wanted <= held:
                found.append([room_id, seq])
                if len(found) == PAGE:
                    break
        return found


async def _write(
    database: Any, sender: Account, rooms: list[tuple[str, int]], rng: random.Random
) -> tuple[Written, float]:
    """Stores each room's messages (``rooms``: id and count), interleaved in time as
    rooms are; returns what was written and the seconds it took."""
    started = time.monotonic()
    written = Written()
    stream = {room: texts(count, rng) for room, count in rooms}
    seqs = dict.fromkeys(stream, 0)
    order = [room for room, count in rooms for _ in range(count)]
    rng.shuffle(order)
    # Sent evenly over the last SPREAD, as a busy room's history accumulates.
    step = SPREAD / max(1, len(order))
    clock = datetime.now(UTC) - SPREAD
    batch: list[dict[str, Any]] = []
    for index, room in enumerate(order):
        seqs[room] += 1
        text = next(stream[room])
        sent_at = clock + index * step
        fields = search_fields(text, sent_at)
        batch.append(
            {
                "_id": ObjectId(),
                "room_id": ObjectId(room),
                "seq": seqs[room],
                "sender_id": ObjectId(sender.id),
                "text": text,
                "client_id": None,
                "idempotency_key": f"{sender.id}:~bench-{room}-{seqs[room]}",
                "created_at": sent_at,
                "edited_at": None,
                "deleted": False,
                "published": True,
                "updated_at": None,
                "update_published": True,
                **fields,
            }
        )
        written.messages.append((room, seqs[room], frozenset(fields["search_tokens"])))
        if len(batch) == INSERT_BATCH:
            await database.messages.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await database.messages.insert_many(batch, ordered=False)
    for room, seq in seqs.items():
        # Where each room's writer would start, as the send path leaves it.
        await database.room_progress.update_one(
            {"_id": ObjectId(room)},
            {
                "$set": {
                    "seq_hint": seq,
                    "last_activity_at": clock + timedelta(milliseconds=len(order)),
                }
            },
            upsert=True,
        )
    return written, time.monotonic() - started


def _plan(explained: dict[str, Any]) -> str:
    """A one-line account of the server's plan (FerretDB's PostgreSQL plan, or
    MongoDB's winning plan)."""
    planner = explained.get("queryPlanner", {})
    if "Plan" in planner:
        pushed = [
            f"{name}={explained.get(name)}"
            for name in ("filterPushdown", "sortPushdown", "limitPushdown")
        ]
        # PostgreSQL's nodes, top down (a Gather runs a parallel scan beneath it).
        nodes = []
        node: dict[str, Any] = planner["Plan"]
        while node:
            relation = f" on {node['Relation Name']}" if "Relation Name" in node else ""
            scan = f"{node.get('Node Type')}{relation}"
            if "Filter" in node:
                scan += f" filter {node['Filter']}"
            nodes.append(scan)
            children = node.get("Plans") or [{}]
            node = children[0]
        return f"{' <- '.join(nodes)} ({', '.join(pushed)})"
    stages = []
    stage = planner.get("winningPlan", {})
    while stage:
        stages.append(
            stage.get("stage", "?") + (f" {stage['indexName']}" if "indexName" in stage else "")
        )
        stage = stage.get("inputStage", {})
    return " <- ".join(stages)


async def _explain(
    database: Any, tokens: list[str], room: str, rooms: list[str]
) -> dict[str, list[str]]:
    """The server's plan of each step of a search, in one room and in every room."""
    plans: dict[str, list[str]] = {}
    scopes: dict[str, PydanticObjectId | list[PydanticObjectId]] = {
        "one room": PydanticObjectId(room),
        "every room": [PydanticObjectId(each) for each in rooms],
    }
    for name, scope in scopes.items():
        plans[name] = []
        for where in search_steps(tokens, scope, None, windowed=True):
            command = {
                "find": "messages",
                "filter": where,
                "sort": {field: int(direction) for field, direction in ORDER},
                "limit": PAGE + 1,
            }
            plans[name].append(_plan(await database.command({"explain": command})))
    return plans


async def _measure(
    connection: HttpConnection,
    account: Account,
    query: str,
    room: str | None,
    expected: list[list[object]],
    samples: int,
) -> tuple[list[float], int, int, list[str]]:
    """``samples`` searches, one at a time: latencies, answers, wrong pages, errors."""
    latencies: list[float] = []
    answered = wrong = 0
    errors: list[str] = []
    variables = {"q": query, "r": room, "first": PAGE}
    for _ in range(samples):
        started = time.perf_counter()
        try:
            answer = await connection.post_json(
                "/graphql", {"query": SEARCH, "variables": variables}, account.token
            )
        except (OSError, HttpError) as exc:
            # A search over the client's timeout is an error of the run, not its end.
            errors.append(repr(exc))
            continue
        latencies.append(time.perf_counter() - started)
        if answer.get("errors"):
            errors.append(str(answer["errors"])[:300])
            continue
        answered += 1
        edges = answer["data"]["searchMessages"]["edges"]
        if [[edge["node"]["roomId"], edge["node"]["seq"]] for edge in edges] != expected:
            wrong += 1
    return latencies, answered, wrong, errors


async def _run_backend(options: Options, backend: str) -> dict[str, Any]:
    if backend != "real":
        raise SystemExit("search: the real services only (its rooms are written to the database)")
    rng = random.Random(SEED)
    url = start_real_services().mongo_url_for(f"bench_{options.run_id}")
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, tz_aware=True)
    try:
        async with plop_target(options, backend) as target:
            return await _searches(options, target, client.get_default_database(), rng)
    finally:
        await client.close()


async def _searches(
    options: Options, target: Target, database: Any, rng: random.Random
) -> dict[str, Any]:
    population = await target.populate(1, options.rooms + 1)
    account = population.accounts[0]
    big, *others = population.rooms
    layout = [(big, options.messages)] + [(room, options.room_messages) for room in others]
    written, fill_seconds = await _write(database, account, layout, rng)
    rows: list[dict[str, Any]] = []
    connection = target.connection()
    try:
        for name, ranks in QUERIES.items():
            query = " ".join(word(rank) for rank in ranks)
            tokens = query_tokens(query)
            for scope, room in (("one room", big), ("every room", None)):
                expected = written.first_page(tokens, room)
                latencies, answered, wrong, errors = await _measure(
                    connection, account, query, room, expected, options.max_requests
                )
                matching = sum(
                    1
                    for room_id, _, held in written.messages
                    if (room is None or room_id == room) and set(tokens) <= held
                )
                rows.append(
                    {
                        "query": name,
                        "scope": scope,
                        "messages_searched": options.messages
                        + (0 if room else options.rooms * options.room_messages),
                        "matching": matching,
                        "requests": options.max_requests,
                        "answered": answered,
                        "wrong_results": wrong,
                        "errors": len(errors),
                        "error_samples": errors[:3],
                        **latency_summary(latencies),
                        "_latencies": latencies,
                    }
                )
        plans = await _explain(
            database, query_tokens(word(QUERIES["rare word"][0])), big, population.rooms
        )
    finally:
        await connection.close()
    return {"rows": rows, "plans": plans, "fill_seconds": round(fill_seconds, 1)}


async def run(options: Options) -> Report:
    results = [await _run_backend(options, backend) for backend in options.backends]
    rows = [row for result in results for row in result["rows"]]
    latencies = {f"{row['query']}, {row['scope']}": row.pop("_latencies") for row in rows}
    plans = results[0]["plans"]
    report = Report(
        scenario="search",
        title="searchMessages in a big room and across many rooms",
        argv=options.argv,
        parameters={
            "room_messages": options.messages,
            "rooms": options.rooms,
            "messages_per_other_room": options.room_messages,
            "samples": options.max_requests,
            "page": PAGE,
            "vocabulary": VOCABULARY,
            "words_per_message": WORDS_PER_MESSAGE,
            "backends": options.backends,
            "smoke": options.smoke,
        },
        data={"rows": rows, "plans": plans, "fill_seconds": results[0]["fill_seconds"]},
    )
    report.checks = summed(rows, "requests", "answered", "errors", "wrong_results")
    report.checks["failed"] = report.checks["wrong_results"]
    report.tables.append(
        Table(
            "searchMessages, one at a time, first page of 20",
            [
                "query",
                "scope",
                "messages searched",
                "matching",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors",
                "wrong pages",
            ],
            [
                [
                    row["query"],
                    row["scope"],
                    row["messages_searched"],
                    row["matching"],
                    row["p50_ms"],
                    row["p99_ms"],
                    row["max_ms"],
                    row["errors"],
                    row["wrong_results"],
                ]
                for row in rows
            ],
        )
    )
    report.notes += [
        f"One user in a room of {options.messages:,} messages and {options.rooms:,} rooms of "
        f"{options.room_messages:,}, sent over the last {SPREAD.days} days, written straight "
        "to the database in "
        f"{results[0]['fill_seconds']} s; each figure is {options.max_requests:,} searches "
        "over one keep-alive HTTP connection, one at a time.",
        "Each search asks the newest window of its lead word first, then wider ones, "
        "then all time, until its page is full (services/search_windows.py).",
        *(
            f"Plan, {scope}, step {number}: {plan}"
            for scope, steps in plans.items()
            for number, plan in enumerate(steps, 1)
        ),
    ]
    if report.checks["errors"]:
        report.notes.append(
            "Errors: " + "; ".join(e for row in rows for e in row["error_samples"])[:1000]
        )

    def distributions(figure: Figure) -> None:
        axes = figure.add_subplot(1, 1, 1)
        for label, values in latencies.items():
            ordered = sorted(value * 1000 for value in values)
            if ordered:
                axes.plot(
                    [index / len(ordered) for index in range(len(ordered))], ordered, label=label
                )
        axes.set(xlabel="fraction of searches", ylabel="ms", yscale="log", title="search latency")
        axes.legend(fontsize="small")

    report.plots.append(Plot("latency", distributions))
    return report
