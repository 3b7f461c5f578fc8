"""The benchmark tables: medians and spreads over runs (``bench/summary.py``), and the
full table in docs/benchmarks.md and the README's ten-row headline being the ones
``bench/results/summary.json`` gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import compact_json
from bench.summary import (
    HEADLINE_KEYS,
    HEADLINE_MARKERS,
    SUMMARY_MARKERS,
    carried_over,
    headline_rows,
    markdown_table,
    replace_between,
    summarise,
)
from tests.support.services import REPO

BENCH_ALL = [sys.executable, "-m", "bench", "all"]


def send_document(plop_per_second: float, raw_per_second: float, cpu_us: float) -> dict[str, Any]:
    def row(target: str, per_second: float, cpu: float) -> dict[str, Any]:
        return {
            "target": target,
            "concurrency": 64,
            "per_second": per_second,
            "server_cpu_us_per_request": cpu,
        }

    return {
        "scenario": "send",
        "results": {
            "rows": [
                row("raw FastAPI", raw_per_second, 400.0),
                row("Plop (real)", plop_per_second, cpu_us),
            ]
        },
    }


def headline(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    (found,) = [row for row in rows if row["key"] == key]
    return found


def test_each_figure_is_a_median_with_its_spread_and_ratios_are_per_run() -> None:
    runs = [
        {"send": send_document(100.0, 1000.0, 5000.0)},
        {"send": send_document(300.0, 1500.0, 2000.0)},
        {"send": send_document(500.0, 1000.0, 1000.0)},
    ]
    rows = summarise(runs)
    rate = headline(rows, "send_per_second_c64_real")
    assert rate["value"] == {"median": 300.0, "min": 100.0, "max": 500.0, "runs": 3}
    assert rate["reference_value"]["median"] == 1000.0
    # Ratios within each run (0.1, 0.2, 0.5), not the ratio of the medians (0.3).
    assert rate["ratio"] == {"median": 0.2, "min": 0.1, "max": 0.5, "runs": 3}
    assert rate["met"] is False  # 300/s < 400/s
    cpu = headline(rows, "send_cpu_ms_c64_real")
    assert cpu["value"]["median"] == pytest.approx(2.0)
    assert cpu["met"] is False  # 2 ms > 1.5 ms
    # A scenario not run is "not measured", never a figure.
    assert headline(rows, "fanout_deliveries_5000_real")["value"] is None
    table = markdown_table(rows)
    assert "| sendMessage/s, concurrency 64, real services | 300.0 (100.0-500.0) |" in table
    assert "not measured" in table


def test_a_target_met_on_the_median_says_yes() -> None:
    runs = [{"send": send_document(450.0, 1000.0, 1200.0)} for _ in range(2)]
    rows = summarise(runs)
    assert headline(rows, "send_per_second_c64_real")["met"] is True
    assert headline(rows, "send_cpu_ms_c64_real")["met"] is True


def test_the_table_goes_between_the_markers_and_nowhere_else(tmp_path: Path) -> None:
    start, end = SUMMARY_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nbefore\n{start}\nold table\n{end}\nafter\n")
    replace_between(readme, SUMMARY_MARKERS, "| new |\n")
    assert readme.read_text() == f"# T\n\nbefore\n{start}\n| new |\n{end}\nafter\n"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- bench:summary:start -->"):
        replace_between(readme, SUMMARY_MARKERS, "| new |\n")


def _between(text: str, markers: tuple[str, str]) -> str:
    start, end = markers
    return text[text.index(start) + len(start) : text.index(end)].strip()


def test_the_docs_and_the_readme_show_the_tables_of_the_latest_summary() -> None:
    rows = json.loads((REPO / "bench" / "results" / "summary.json").read_text())["headlines"]
    docs = (REPO / "docs" / "benchmarks.md").read_text()
    assert _between(docs, SUMMARY_MARKERS) == markdown_table(rows).strip()
    readme = (REPO / "README.md").read_text()
    assert _between(readme, HEADLINE_MARKERS) == markdown_table(headline_rows(rows)).strip()
    # Ten rows, each a target of the full table.
    assert len(headline_rows(rows)) == len(HEADLINE_KEYS) == 10
    assert {row["key"] for row in rows} >= set(HEADLINE_KEYS)


def test_results_files_stay_short() -> None:
    for path in (REPO / "bench" / "results").glob("*.json"):
        lines = path.read_text().count("\n")
        assert lines < 2_000, f"{path.name} has {lines} lines"


def test_compact_json_keeps_every_field_and_value() -> None:
    document = {"a": [1, 2.5, None], "b": {"c": [{"x": 1}, {"y": [1, 2]}], "e": {}}, "t": []}
    text = compact_json(document)
    assert json.loads(text) == document
    assert '"a": [1, 2.5, null]' in text


def test_bench_all_keeps_the_latest_run_and_summarises_every_run(tmp_path: Path) -> None:
    (tmp_path / "stored-old-layout.png").write_bytes(b"stale")
    # Stored history: the scenario of the table whose smoke runs quickest (one server,
    # no load processes), twice.
    done = subprocess.run(
        [*BENCH_ALL, "--runs", "2", "--only", "stored", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["runs"] == 2
    assert summary["failed"] == []
    latency = headline(summary["headlines"], "stored_latency_ratio_embedded")
    assert latency["value"]["runs"] == 2
    assert latency["reference_value"]["runs"] == 2
    assert not (tmp_path / ".runs").exists()
    assert not (tmp_path / "stored-old-layout.png").exists()
    assert json.loads((tmp_path / "stored.json").read_text())["scenario"] == "stored"
    table = (tmp_path / "summary.md").read_text()
    measure = "send p50 into a room of 10,000 stored messages vs an empty room, embedded (ms)"
    assert table.count(f"| {measure} |") == 1


def test_rows_of_scenarios_not_run_again_keep_their_own_runs() -> None:
    three = summarise([{"send": send_document(100.0 * n, 1000.0, 1000.0)} for n in (1, 2, 3)])
    one = summarise([{"send": send_document(450.0, 1000.0, 1000.0)}])
    # send was not run this time: its rows stay as the three-run summary had them.
    rows = carried_over(one, three, ran={"fanout"})
    assert headline(rows, "send_per_second_c64_real")["value"]["runs"] == 3
    # ...and are replaced when it was.
    rows = carried_over(one, three, ran={"send"})
    assert headline(rows, "send_per_second_c64_real")["value"]["runs"] == 1
    assert "| 3 |" in markdown_table(three)


def hot_document(levels: dict[int, tuple[float, float, float, float]]) -> dict[str, Any]:
    """One room's and the spread layout's stored/s and p99 per level, real services."""
    rows = []
    for concurrency, (one_rate, spread_rate, one_p99, spread_p99) in levels.items():
        for layout, rate, p99 in (
            ("one room", one_rate, one_p99),
            ("spread", spread_rate, spread_p99),
        ):
            rows.append(
                {
                    "target": "Plop (real)",
                    "layout": layout,
                    "concurrency": concurrency,
                    "per_second": rate,
                    "p99_ms": p99,
                }
            )
    return {
        "scenario": "hot",
        "checks": {"unavailable": 2, "stored": 900},
        "results": {"rows": rows},
    }


def test_hot_room_figures_are_the_worst_level_and_its_own_spread_layout() -> None:
    document = hot_document({16: (90.0, 100.0, 30.0, 20.0), 64: (50.0, 100.0, 50.0, 40.0)})
    rows = summarise([{"hot": document}])
    stored = headline(rows, "hot_stored_ratio_real")
    # C=64 is the worst ratio (0.5), compared with C=64's spread layout only.
    assert stored["value"]["median"] == 50.0
    assert stored["ratio"]["median"] == 0.5
    assert stored["met"] is False
    assert headline(rows, "hot_stored_ratio_two_instances")["value"] is None
    p99 = headline(rows, "hot_p99_ratio")
    assert p99["ratio"]["median"] == 1.5  # C=16: 30 ms beside 20 ms
    assert p99["met"] is True
    assert headline(rows, "hot_unavailable")["met"] is False
    met = summarise([{"hot": hot_document({16: (85.0, 100.0, 10.0, 10.0)})}])
    assert headline(met, "hot_stored_ratio_real")["met"] is True
