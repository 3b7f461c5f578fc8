"""The persisted scenario in smoke mode: sendMessage by text, then by hash alone, with
its bookkeeping (every send answered once, each room's seqs in order). Timings are
never asserted."""

from __future__ import annotations

from pathlib import Path

from tests.test_bench import run_bench


def test_persisted(tmp_path: Path) -> None:
    document = run_bench(tmp_path, "persisted", "--backend", "embedded", "--concurrency", "2")
    rows = document["results"]["rows"]
    assert [(row["target"], row["mode"]) for row in rows] == [
        ("Plop (embedded)", "text"),
        ("Plop (embedded)", "hash"),
    ]
    text, by_hash = rows
    for row in rows:
        assert row["requests"] > 0
        assert row["answered"] == row["requests"]
        assert row["errors"] == row["seq_gaps"] == 0
    # The hash alone is what the text was replaced by: a shorter body, same variables.
    assert by_hash["request_body_bytes"] < text["request_body_bytes"]
    assert document["checks"]["errors"] == 0
