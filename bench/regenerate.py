"""``plop bench all``: every scenario of the benchmark table, ``--runs`` times, then the
table itself.

Each run writes its scenarios' files into a folder of its own under
``bench/results/.runs``; at the end the last run's files replace ``bench/results``
(the latest run only), ``summary.json`` and ``summary.md`` give each headline figure
as a median with its spread over the runs (``bench/summary.py``), the full table in
docs/benchmarks.md and the README's ten-row headline table are rewritten between
their markers. Each scenario runs as its own
``python -m bench`` process, as a user would run it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.report import compact_json, machine
from bench.server import REPO
from bench.summary import (
    HEADLINE_MARKERS,
    SUMMARY_MARKERS,
    carried_over,
    headline_rows,
    load_documents,
    markdown_table,
    replace_between,
    summarise,
)

RESULTS = REPO / "bench" / "results"
README = REPO / "README.md"
BENCHMARKS_DOC = REPO / "docs" / "benchmarks.md"

# The scenarios behind the benchmark table, as ``python -m bench`` arguments: what is
# measured (backends, instances), then the sizes and the Centrifugo peer, left out by
# ``--smoke`` (the suite never builds Centrifugo: that takes minutes on a new machine).
PLAN: dict[str, tuple[list[str], list[str]]] = {
    "send": (
        ["send", "--backend", "both", "--instances", "1,2"],
        ["--concurrency", "16,64"],
    ),
    "hot": (["hot", "--backend", "both", "--instances", "1,2"], []),
    "fanout": (
        [
            "fanout",
            "--backend",
            "real",
            "--rooms",
            "1",
            "--instances",
            "1,2",
        ],
        ["--subscribers", "1000,5000,10000", "--paced-messages", "10", "--peer", "centrifugo"],
    ),
    "stored": (["stored", "--backend", "embedded"], []),
    "memory": (["memory"], ["--peer", "centrifugo"]),
    "reconnect": (["reconnect", "--backend", "both"], []),
}


def arguments(name: str, smoke: bool) -> list[str]:
    shape, sizes = PLAN[name]
    return [*shape, "--smoke"] if smoke else [*shape, *sizes]


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m bench all",
        description="Run every scenario of the benchmark table and regenerate the tables.",
    )
    parse.add_argument(
        "--runs",
        type=int,
        default=3,
        help="Runs of each scenario; 0 runs nothing and summarises the latest results [3].",
    )
    parse.add_argument(
        "--only",
        default="",
        help="Scenarios to run, comma-separated; the others keep their latest results "
        f"[all: {','.join(PLAN)}].",
    )
    parse.add_argument("--out", type=Path, default=RESULTS, help=f"[default: {RESULTS}]")
    parse.add_argument(
        "--no-readme",
        action="store_true",
        help="Write the summary, leave README.md and docs/benchmarks.md alone.",
    )
    parse.add_argument(
        "--smoke", action="store_true", help="Tiny sizes, to try the command (implies --no-readme)."
    )
    return parse


def _run_scenario(arguments: list[str], out: Path) -> int:
    command = [sys.executable, "-m", "bench", *arguments, "--out", str(out)]
    sys.stdout.write(f"== {' '.join(command[1:])}\n")
    sys.stdout.flush()
    return subprocess.run(command, cwd=REPO, stdin=subprocess.DEVNULL, check=False).returncode


def _latest_only(out: Path, last_run: Path, scenarios: list[str]) -> None:
    """The run's files of ``scenarios`` replace theirs in ``out``; other files of those
    scenarios (plots of an older layout, earlier sub-runs) go."""
    for scenario in scenarios:
        for old in [*out.glob(f"{scenario}.*"), *out.glob(f"{scenario}-*")]:
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        for new in [*last_run.glob(f"{scenario}.*"), *last_run.glob(f"{scenario}-*")]:
            shutil.move(str(new), out / new.name)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    chosen = [name for name in args.only.split(",") if name] or list(PLAN)
    unknown = sorted(set(chosen) - set(PLAN))
    if unknown:
        parser().error(f"unknown scenarios: {', '.join(unknown)}")
    if args.runs < 0:
        parser().error("--runs must be 0 or more")
    out: Path = args.out
    staging = out / ".runs"
    shutil.rmtree(staging, ignore_errors=True)
    failed: list[str] = []
    started = time.monotonic()
    run_folders = []
    for number in range(1, args.runs + 1):
        folder = staging / str(number)
        folder.mkdir(parents=True)
        run_folders.append(folder)
        for name in chosen:
            if _run_scenario(arguments(name, args.smoke), folder) != 0:
                failed.append(f"run {number}: {name}")
    runs = [load_documents(folder) for folder in run_folders]
    ran = set(chosen) if run_folders else set()
    # The scenarios not run now: their latest files, for the rows no summary has yet.
    latest = {name: doc for name, doc in load_documents(out).items() if name not in ran}
    runs = [{**latest, **run} for run in runs] or [latest]
    if run_folders:
        _latest_only(out, run_folders[-1], chosen)
    shutil.rmtree(staging, ignore_errors=True)

    summary_path = out / "summary.json"
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    rows = carried_over(summarise(runs), previous.get("headlines", []), ran)
    table = markdown_table(rows)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = {
        "measured_at": when,
        "command": " ".join(["plop", "bench", "all", *argv]),
        "runs": args.runs,
        "scenarios": {name: arguments(name, args.smoke) for name in chosen},
        "minutes": round((time.monotonic() - started) / 60, 1),
        "failed": failed,
        "machine": machine(),
        "headlines": rows,
    }
    summary_path.write_text(compact_json(summary) + "\n")
    (out / "summary.md").write_text(
        f"# Headline figures\n\nMeasured {when} by `{summary['command']}`.\n\n{table}"
    )
    if not (args.no_readme or args.smoke):
        replace_between(BENCHMARKS_DOC, SUMMARY_MARKERS, table)
        replace_between(README, HEADLINE_MARKERS, markdown_table(headline_rows(rows)))
    sys.stdout.write(table)
    if failed:
        sys.stdout.write("bookkeeping failed: " + "; ".join(failed) + "\n")
    return 1 if failed else 0
