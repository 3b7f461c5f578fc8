"""Each benchmark scenario in smoke mode: small sizes, seconds, its own bookkeeping only.

The scenarios run as users run them (``python -m bench SCENARIO --smoke``), each
starting its own servers. What is checked is what the scenario counts: every
subscriber got every message once (deliveries = subscribers x messages, lost 0,
duplicated 0) and the files were written. Timings are never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import REPO

SMOKE_TIMEOUT_SECONDS = 170
SUBSCRIBERS = 20
MESSAGES = 10
PACED = 5


def run_bench(out: Path, *args: str) -> dict[str, Any]:
    """Runs ``python -m bench ARGS --smoke --out OUT``; its results JSON."""
    scenario = args[0]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert (out / f"{scenario}.md").stat().st_size > 0
    assert list(out.glob(f"{scenario}-*.png")), "no plot written"
    document: dict[str, Any] = json.loads((out / f"{scenario}.json").read_text())
    assert document["command"].endswith(f"--smoke --out {out}")
    for image in document["plots"]:
        assert (out / image).read_bytes().startswith(b"\x89PNG")
    return document


@pytest.mark.parametrize("backend", ["embedded", "real"])
def test_send(tmp_path: Path, backend: str) -> None:
    document = run_bench(tmp_path, "send", "--backend", backend, "--concurrency", "1,4")
    rows = document["results"]["rows"]
    servers = {row["target"] for row in rows}
    assert servers == {"raw FastAPI", f"Plop ({backend})"}
    assert {row["concurrency"] for row in rows} == {1, 4}
    for row in rows:
        assert row["requests"] > 0
        assert row["answered"] == row["requests"]
        assert row["errors"] == 0
        assert row["seq_gaps"] == 0
        assert row["ratio_per_second"] is not None


@pytest.mark.parametrize(
    ("backend", "instances", "plops"),
    [
        ("embedded", "1", {"Plop (embedded)"}),
        # Two instances on the same services: the scaling rows.
        ("real", "1,2", {"Plop (real)", "Plop (real, 2 instances)"}),
    ],
)
def test_fanout(tmp_path: Path, backend: str, instances: str, plops: set[str]) -> None:
    document = run_bench(
        tmp_path,
        "fanout",
        "--backend",
        backend,
        "--instances",
        instances,
        "--subscribers",
        str(SUBSCRIBERS),
        "--messages",
        str(MESSAGES),
        "--paced-messages",
        str(PACED),
        "--rooms",
        "4",
    )
    configs = document["results"]["configs"]
    # Every server, each on one room and spread over rooms.
    assert len(configs) == 2 * (1 + len(plops))
    assert {config["target"] for config in configs} == {"raw FastAPI", *plops}
    for config in configs:
        assert config["opened"] == SUBSCRIBERS
        for phase, messages in (("burst", MESSAGES), ("paced", PACED)):
            figures = config[phase]
            assert figures["deliveries"] == SUBSCRIBERS * messages
            assert figures["lost"] == 0
            assert figures["duplicates"] == 0
            assert figures["beyond_expected"] == 0
            assert figures["ratio_deliveries_per_second"] is not None
            # How busy the machine was: the server's and the load's shares within it.
            assert figures["machine_busy_share"] > 0
            assert 0 <= figures["server_cpu_share"] <= figures["machine_busy_share"] + 0.01
            assert figures["others_cpu_share"] >= 0
            assert figures["load_average_1m"] >= 0
        assert config["send_errors"] == 0
        assert config["seq_gaps"] == 0
    assert "## Machine load per round" in (tmp_path / "fanout.md").read_text()


def test_memory(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "memory", "--subscribers", str(SUBSCRIBERS))
    idle = document["results"]["idle"]
    assert [row["target"] for row in idle] == ["raw FastAPI", "Plop (embedded)"]
    for row in idle:
        assert row["opened"] == SUBSCRIBERS
        assert len(row["points"]) == 5
        verify = row["verify"]
        assert verify["deliveries"] == SUBSCRIBERS  # one message per room reaches each
        assert verify["lost"] == 0
        assert verify["duplicates"] == 0
        # Many deliveries with every socket open, each counted, before they all close.
        delivered = row["deliveries_then_closed"]
        waves = -(-document["parameters"]["deliveries_before_closing"] // SUBSCRIBERS)
        assert delivered["expected_deliveries"] == SUBSCRIBERS * waves
        assert delivered["deliveries"] == delivered["expected_deliveries"]
        assert delivered["lost"] == 0
        assert delivered["duplicates"] == 0
    (ramp,) = document["results"]["ramp"]
    assert ramp["held"] == document["parameters"]["max_subscriptions"]
    assert ramp["verify"]["deliveries"] == ramp["held"]
    assert ramp["verify"]["lost"] == 0
    assert ramp["verify"]["duplicates"] == 0


def test_reconnect(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "reconnect", "--subscribers", str(SUBSCRIBERS), "--rooms", "2")
    (row,) = document["results"]["rows"]
    assert row["opened"] == SUBSCRIBERS
    assert row["failed_reconnects"] == 0
    assert row["caught_up"] == SUBSCRIBERS
    # Messages were sent while every subscriber was away, and they were caught up:
    # each subscriber has every seq of its room once.
    assert row["messages_missed_per_room"] > 0
    per_room = set(row["messages_per_room"].values())
    assert len(per_room) == 1, "every room gets every wave"
    (messages,) = per_room
    assert messages > row["messages_missed_per_room"]
    assert row["deliveries"] == SUBSCRIBERS * messages
    assert row["lost"] == 0
    assert row["duplicates"] == 0
    # The raw baseline reopened the same sockets, each live again.
    raw = document["results"]["raw_reopen"]
    assert raw["target"] == "raw FastAPI"
    assert raw["opened"] == SUBSCRIBERS
    assert raw["failed_reconnects"] == 0
    assert raw["caught_up"] == SUBSCRIBERS
    assert raw["duplicates"] == 0
    assert row["catch_up_to_raw_reopen"] is not None


@pytest.mark.parametrize("backend", ["embedded", "real"])
def test_stored(tmp_path: Path, backend: str) -> None:
    document = run_bench(tmp_path, "stored", "--backend", backend)
    (row,) = document["results"]["rows"]
    assert row["target"] == f"Plop ({backend})"
    stored, samples = row["stored_messages"], row["samples"]
    assert stored > 0 and samples > 0
    # Every send answered once, and each room's seqs came out 1..n: the full room
    # holds what was stored plus what was measured in it.
    assert row["answered"] == row["requests"]
    assert row["errors"] == 0
    assert row["duplicates"] == 0
    assert row["seq_gaps"] == 0
    for name in ("empty", "full", "beside_full"):
        assert row[name]["count"] == samples
    assert row["highest_seq"]["full"] == stored + samples
    assert row["highest_seq"]["empty"] == row["requests"] - stored - samples
    assert row["ratio_p50"] is not None


def test_search(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "search", "--messages", "120", "--rooms", "2")
    rows = document["results"]["rows"]
    assert {(row["query"], row["scope"]) for row in rows} == {
        (query, scope)
        for query in ("rare word", "common word", "two words")
        for scope in ("one room", "every room")
    }
    for row in rows:
        # Every search answered, each first page the one the written texts give.
        assert row["answered"] == row["requests"] > 0
        assert row["errors"] == 0
        assert row["wrong_results"] == 0
        assert row["count"] == row["requests"]
    assert any(row["matching"] > 0 for row in rows)
    assert set(document["results"]["plans"]) == {"one room", "every room"}


def test_keys(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "keys")
    rows = {row["mode"]: row for row in document["results"]["rows"]}
    assert set(rows) == {"dropped", "decoded", "served"}
    for row in rows.values():
        # The followed room's events arrived once each, in order, and nothing else.
        assert row["arrived_in_order_once"] is True
        assert row["events"] == 200
        assert row["cpu_us_per_event"] > 0
    assert document["checks"]["every_run_in_order_once"] is True


def test_hot(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "hot", "--backend", "embedded")
    rows = document["results"]["rows"]
    levels = document["parameters"]["senders"]
    # Each level measured in one room and spread over as many rooms, side by side.
    assert [(row["concurrency"], row["layout"]) for row in rows] == [
        (level, layout) for level in levels for layout in ("one room", "spread")
    ]
    for row in rows:
        assert row["rooms"] == (1 if row["layout"] == "one room" else row["concurrency"])
        assert row["requests"] > 0
        assert row["opened"] == row["subscribers"] == row["rooms"]
        assert row["deliveries"] == row["expected_deliveries"] > row["answered"] > 0
        for books in ("lost", "duplicates", "reordered", "answer_duplicates", "out_of_order"):
            assert row[books] == 0, books
        assert row["unexplained_gaps"] == 0
        assert (row["layout"] == "one room") == ("ratio_per_second" in row)
    # The hot room's fan-out: many senders beside one, every delivery once and in order.
    fanout = document["results"]["fanout"]
    assert sorted(config["senders"] for config in fanout) == [1, 32]
    for config in fanout:
        assert config["opened"] == config["subscribers"]
        for phase in ("burst", "paced"):
            figures = config[phase]
            assert figures["deliveries"] == figures["expected_deliveries"] > 0
            assert figures["lost"] == figures["duplicates"] == figures["reordered"] == 0
        assert config["send_errors"] == config["seq_gaps"] == 0


# --- the books, without a server -------------------------------------------------------


def test_subscriber_books_find_a_gap_a_duplicate_and_a_reorder() -> None:
    from bench.load import Subscriber, Worker

    worker = Worker()
    sub = Subscriber("room", base=10)
    sub.open = True
    worker.subscribers.append(sub)
    for seq in (11, 13, 12, 12, 15):  # 12 after 13, 12 twice, 14 never
        worker.deliver(sub, seq, "1.0 text", 2.0, 10)
    books = worker._round_report({"room": 15})
    assert books["deliveries"] == 4
    assert books["duplicates_total"] == 1
    assert books["reordered_total"] == 1
    assert books["lost"] == 1
    assert sub.contiguous() == 13
    in_order = Subscriber("room", base=0)
    for seq in (1, 2, 3):
        assert in_order.record(seq)
    assert (in_order.duplicates, in_order.reordered, in_order.contiguous()) == (0, 0, 3)


def test_seq_ledger_finds_gaps_repeats_and_answers_out_of_order() -> None:
    from bench.common import SeqLedger
    from bench.targets import SendFailed

    ledger = SeqLedger(base=10)
    first, second = object(), object()
    for seq, sender in ((11, first), (13, second), (12, first), (12, second)):
        ledger.answered(seq, sender)
    # 12 answered twice; the second sender's answers fell (13, then 12).
    assert ledger.check() == {
        "answered": 4,
        "duplicates": 1,
        "seq_gaps": 0,
        "out_of_order": 1,
        "errors": 0,
        "unavailable": 0,
    }
    assert ledger.highest == 13
    ledger.answered(16, first)  # 14 and 15 never answered
    ledger.answered(9, second)  # below the room's seq when the ledger started
    ledger.failed(SendFailed("down", ("UNAVAILABLE",)))
    ledger.failed(SendFailed("oops", ("INTERNAL",)))
    ledger.failed(TimeoutError())
    checked = ledger.check()
    assert (checked["seq_gaps"], checked["duplicates"], checked["out_of_order"]) == (2, 2, 2)
    assert (checked["errors"], checked["unavailable"]) == (3, 1)


def test_send_errors_keep_their_codes() -> None:
    from bench.targets import error_codes

    errors = [
        {"message": "a", "extensions": {"code": "UNAVAILABLE"}},
        {"message": "b"},
        "not an error",
    ]
    assert error_codes(errors) == ("UNAVAILABLE", "?", "?")
    assert error_codes(None) == ()


def test_hot_options_and_books() -> None:
    from bench.cli import options_from, passed
    from bench.scenario_hot import fanout_backend

    options = options_from(["hot", "--senders", "8,32", "--seconds", "2.5"])
    assert (options.concurrency, options.duration, options.backends) == ([8, 32], 2.5, ["embedded"])
    options = options_from(["hot", "--backend", "both", "--instances", "1,2"])
    assert options.concurrency == [16, 64, 256]
    assert options.backends == ["embedded", "real", "real-x2"]
    assert fanout_backend(options.backends) == "real-x2"
    assert fanout_backend(["embedded"]) == "embedded"
    books = {"lost": 0, "duplicates": 0, "unavailable": 3, "other_errors": 1}
    assert passed(books)  # refusals are figures of the hot scenario, not its books
    assert not passed({**books, "reordered": 1})
    assert not passed({**books, "out_of_order": 1})


# --- the Centrifugo peer's pure parts (the peer itself runs in `plop bench` only) ----


def test_centrifugo_frame_with_several_lines_is_read_line_by_line() -> None:
    from bench.centrifugo_wire import read_frame

    publication = {"seq": 3, "text": "1.5 xx"}
    frame = "\n".join(
        [
            json.dumps({"push": {"channel": "room-a", "pub": {"data": publication}}}),
            "{}",
            json.dumps({"id": 2, "subscribe": {}}),
            json.dumps({"push": {"channel": "room-b", "pub": {"data": {"seq": 4}}}}),
        ]
    )
    inbound = read_frame(frame.encode())
    assert [(p.channel, p.data) for p in inbound.publications] == [
        ("room-a", publication),
        ("room-b", {"seq": 4}),
    ]
    assert inbound.publications[0].size == len(frame.split("\n")[0])
    assert inbound.pings == 1
    assert set(inbound.replies) == {2}
    assert inbound.problems == []


def test_centrifugo_refusals_and_disconnects_are_problems() -> None:
    from bench.centrifugo_wire import read_frame

    frame = "\n".join(
        [
            json.dumps({"id": 2, "error": {"code": 103, "message": "permission denied"}}),
            json.dumps({"push": {"disconnect": {"code": 3008, "reason": "slow"}}}),
            "not json",
        ]
    )
    inbound = read_frame(frame)
    assert inbound.publications == []
    assert 2 in inbound.replies
    assert len(inbound.problems) == 3
    assert "permission denied" in inbound.problems[0]


def test_centrifugo_commands_are_its_json_protocol() -> None:
    from bench.centrifugo_wire import CONNECT_COMMAND_ID, connect_command, subscribe_command

    assert json.loads(connect_command("tok")) == {
        "id": CONNECT_COMMAND_ID,
        "connect": {"token": "tok", "name": "plop-bench"},
    }
    assert json.loads(subscribe_command(7, "room")) == {"id": 7, "subscribe": {"channel": "room"}}


def test_centrifugo_config_token_and_build_stay_in_the_cache(tmp_path: Path) -> None:
    import jwt

    from bench import centrifugo

    secret = "s" * 32  # as long as HS256 keys should be
    config = centrifugo.server_config(8123, "key", secret)
    assert config["http_server"] == {"address": "127.0.0.1", "port": 8123}
    assert config["http_api"] == {"key": "key"}
    assert config["client"]["token"] == {"hmac_secret_key": secret}
    assert config["channel"]["without_namespace"]["allow_subscribe_for_client"] is True
    assert config["health"]["handler_prefix"] == "/healthz"  # where readiness is polled

    claims = jwt.decode(centrifugo.connection_token("user-1", secret), secret, algorithms=["HS256"])
    assert claims["sub"] == "user-1"
    assert claims["exp"] > claims["iat"]

    env = centrifugo.build_env("v6.9.1", tmp_path)
    binary = centrifugo.binary_path("v6.9.1", tmp_path)
    assert binary == tmp_path / "v6.9.1" / "bin" / "centrifugo"
    assert env["GOBIN"] == str(binary.parent)
    assert all(Path(env[name]).is_relative_to(tmp_path) for name in ("GOPATH", "GOCACHE"))
    argv = centrifugo.install_argv("v6.9.1")
    assert argv[:2] == ["go", "install"]
    assert argv[-1] == "github.com/centrifugal/centrifugo/v6@v6.9.1"


def test_centrifugo_message_has_the_baseline_message_shape() -> None:
    from bench import centrifugo

    data = centrifugo.message("a" * 24, 5, "1.0 text")
    assert set(data) == {"id", "roomId", "seq", "text", "clientId", "createdAt", "sender"}
    assert (data["roomId"], data["seq"], data["text"]) == ("a" * 24, 5, "1.0 text")
