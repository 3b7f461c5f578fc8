"""A scenario's output: ``<scenario>.json``, ``<scenario>.md`` and PNG plots.

The Markdown file carries the figures, their ratios to the baseline measured in the
same run, the machine, and the command that reproduces it.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot  # (after the backend is chosen)
from matplotlib.figure import Figure

VERSIONED = ("strawberry-graphql", "graphql-core", "fastapi", "uvicorn", "websockets", "uvloop")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted ``values`` (nearest rank); 0.0 if empty."""
    if not values:
        return 0.0
    rank = min(len(values) - 1, max(0, round(fraction * len(values) + 0.5) - 1))
    return float(values[rank])


def latency_summary(latencies: array[float] | list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds."""
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
    }


def summed(rows: Sequence[dict[str, Any]], *names: str) -> dict[str, Any]:
    """A scenario's books: each named count, added up over its rows."""
    return {name: sum(row[name] for row in rows) for name in names}


def ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 3) if baseline else None


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    except OSError:
        pass
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        # Other work on the machine while the run ended skews every figure: say so.
        "load_average_1_5_15": [round(load, 2) for load in os.getloadavg()],
    }


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Plot:
    name: str
    draw: Callable[[Figure], None]


@dataclass
class Report:
    scenario: str
    title: str
    argv: list[str]
    parameters: dict[str, Any]
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)

    @property
    def command(self) -> str:
        return shlex.join([Path(sys.executable).name, "-m", "bench", *self.argv])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _markdown(report: Report, host: dict[str, Any], when: str, images: list[str]) -> str:
    lines = [f"# {report.title}", "", f"Measured {when}.", ""]
    for table in report.tables:
        lines += [f"## {table.title}", ""]
        lines.append("| " + " | ".join(table.headers) + " |")
        lines.append("|" + "---|" * len(table.headers))
        for row in table.rows:
            lines.append("| " + " | ".join(_cell(value) for value in row) + " |")
        lines.append("")
    if report.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    for image in images:
        lines += [f"![{image}]({image})", ""]
    packages = ", ".join(f"{name} {version}" for name, version in host["packages"].items())
    lines += [
        "## Machine",
        "",
        f"- CPU: {host['cpu_model']}, {host['cpu_count']} cores",
        f"- RAM: {host['memory_gib']} GiB",
        f"- Python {host['python']} on {host['platform']}",
        f"- load average when written (1, 5, 15 min): {host['load_average_1_5_15']}",
        f"- {packages}",
        "",
        "## Reproduce",
        "",
        "```bash",
        report.command,
        "```",
        "",
    ]
    return "\n".join(lines)


def _default(value: object) -> Any:
    if isinstance(value, array):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _flat(value: Any) -> bool:
    """A list of plain values: written on one line."""
    return isinstance(value, list | array) and all(
        not isinstance(item, dict | list) for item in value
    )


def compact_json(value: Any, indent: str = "") -> str:
    """JSON indented by objects, with lists of plain values (timelines, samples) on
    one line each: a results file stays a few hundred lines long, whatever the run's
    size, and keeps every field."""
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        items = [
            f"{inner}{json.dumps(str(key))}: {compact_json(item, inner)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list | tuple | array) and not _flat(list(value)):
        if not value:
            return "[]"
        inner = indent + "  "
        items = [inner + compact_json(item, inner) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, default=_default, separators=(", ", ": "))


def write(report: Report, out: Path) -> list[Path]:
    """Writes the JSON, the Markdown and the plots; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    host = machine()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    written: list[Path] = []
    images: list[str] = []
    for plot in report.plots:
        figure = pyplot.figure(figsize=(8, 4.5), dpi=100)
        try:
            plot.draw(figure)
            figure.tight_layout()
            path = out / f"{report.scenario}-{plot.name}.png"
            figure.savefig(path)
        finally:
            pyplot.close(figure)
        written.append(path)
        images.append(path.name)
    document = {
        "scenario": report.scenario,
        "title": report.title,
        "measured_at": when,
        "command": report.command,
        "parameters": report.parameters,
        "machine": host,
        "checks": report.checks,
        "results": report.data,
        "notes": report.notes,
        "plots": images,
    }
    json_path = out / f"{report.scenario}.json"
    json_path.write_text(compact_json(document) + "\n")
    md_path = out / f"{report.scenario}.md"
    md_path.write_text(_markdown(report, host, when, images))
    return [json_path, md_path, *written]
