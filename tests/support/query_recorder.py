"""A ``plop serve`` that writes down the filter of every query it sends to the database.

pymongo's command monitoring sees each command as it leaves the driver, whichever
layer built it (Beanie, or a service's own collection call), so the record is what
the server really asks, in the server's own process. Only the shape matters to the
tests that read it (which fields a filter names), so values are kept as BSON's JSON.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bson import json_util
from pymongo import monitoring

from devtools.processes import REPO
from tests.support.server import ServerProcess

RECORD_PATH_VARIABLE = "QUERY_RECORD_PATH"


@dataclass(frozen=True)
class RecordedQuery:
    command: str
    collection: str
    filter: dict[str, Any]


def filters_of(command_name: str, command: Any) -> list[dict[str, Any]]:
    """The filters a command selects documents by (none for an insert)."""
    match command_name:
        case "find":
            return [dict(command.get("filter") or {})]
        case "update":
            return [dict(update.get("q") or {}) for update in command.get("updates") or []]
        case "delete":
            return [dict(delete.get("q") or {}) for delete in command.get("deletes") or []]
        case "findAndModify" | "count" | "distinct":
            return [dict(command.get("query") or {})]
        case "aggregate":
            stages = command.get("pipeline") or []
            first = stages[0] if stages else {}
            return [dict(first.get("$match") or {})]
    return []


class _Recorder(monitoring.CommandListener):
    def __init__(self, out: TextIO) -> None:
        self._out = out

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        for selected in filters_of(event.command_name, command):
            row = {
                "command": event.command_name,
                "collection": command.get(event.command_name),
                "filter": selected,
            }
            # One write per line: a line is whole even if the process is killed.
            self._out.write(json_util.dumps(row) + "\n")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def serve() -> None:
    """``plop serve`` with the recorder on (run as the server process's main)."""
    from cli.commands import main

    with Path(os.environ[RECORD_PATH_VARIABLE]).open("a", buffering=1) as out:
        monitoring.register(_Recorder(out))
        main()


def read_record(path: Path) -> list[RecordedQuery]:
    rows = []
    for line in path.read_text().splitlines():
        row = json_util.loads(line)
        rows.append(RecordedQuery(row["command"], str(row["collection"]), row["filter"]))
    return rows


def shown(query: RecordedQuery) -> str:
    return f"{query.collection}.{query.command} {json_util.dumps(query.filter)}"


class RecordingServer(ServerProcess):
    """A real server process (``plop serve``, the same options) whose queries are
    written to ``record``."""

    def __init__(self, name: str, env: dict[str, str], record: Path) -> None:
        super().__init__(name, {**env, RECORD_PATH_VARIABLE: str(record), "PYTHONPATH": str(REPO)})
        serve_at = self._argv.index("serve")
        self._argv = [sys.executable, "-c", _MAIN, *self._argv[serve_at:]]


_MAIN = "from tests.support.query_recorder import serve; serve()"
