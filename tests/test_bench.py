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


@pytest.mark.parametrize("backend", ["embedded", "real"])
def test_fanout(tmp_path: Path, backend: str) -> None:
    document = run_bench(
        tmp_path,
        "fanout",
        "--backend",
        backend,
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
    # Both servers, each on one room and spread over rooms.
    assert len(configs) == 4
    assert {config["target"] for config in configs} == {"raw FastAPI", f"Plop ({backend})"}
    for config in configs:
        assert config["opened"] == SUBSCRIBERS
        for phase, messages in (("burst", MESSAGES), ("paced", PACED)):
            figures = config[phase]
            assert figures["deliveries"] == SUBSCRIBERS * messages
            assert figures["lost"] == 0
            assert figures["duplicates"] == 0
            assert figures["beyond_expected"] == 0
            assert figures["ratio_deliveries_per_second"] is not None
        assert config["send_errors"] == 0
        assert config["seq_gaps"] == 0


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
