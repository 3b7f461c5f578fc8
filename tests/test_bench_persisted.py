"""The persisted scenario in smoke mode: sendMessage by text, then by hash alone, with
its bookkeeping (every send answered once, each room's seqs in order). Timings are
never asserted."""

from __future__ import annotations

from pathlib import Path

from tests.test_bench import run_bench


def test_persisted(tmp_path: Path) -> None:
    # Two levels: the rooms of the first carry their seqs into the second.
    document = run_bench(tmp_path, "persisted", "--backend", "embedded", "--concurrency", "1,2")
    rows = document["results"]["rows"]
    assert [(row["target"], row["concurrency"], row["mode"]) for row in rows] == [
        ("Plop (embedded)", 1, "text"),
        ("Plop (embedded)", 1, "hash"),
        ("Plop (embedded)", 2, "text"),
        ("Plop (embedded)", 2, "hash"),
    ]
    for row in rows:
        assert row["requests"] > 0
        assert row["answered"] == row["requests"]
        assert row["errors"] == row["seq_gaps"] == 0
    # The hash alone is what the text was replaced by: a shorter body, same variables.
    for text, by_hash in (rows[0:2], rows[2:4]):
        assert by_hash["request_body_bytes"] < text["request_body_bytes"]
    assert document["checks"]["errors"] == 0
