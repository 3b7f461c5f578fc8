"""Imports flow one way: services hold the rules and know nothing of GraphQL, the
transport, push delivery or the process's composition."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What services/ may never import, directly or by a submodule.
FORBIDDEN_IN_SERVICES = ("strawberry", "graphql", "push", "transport", "schema", "resolvers", "app")
# Live delivery reads the store and renders only through what it is given.
FORBIDDEN_IN_LIVE = (*FORBIDDEN_IN_SERVICES, "services", "models", "backends", "beanie", "pymongo")


# Each file is parsed once: the walks from the many files of services/ meet the same
# modules over and over, and parsing them again each time took most of a minute.
@functools.cache
def imported_modules(path: Path) -> frozenset[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return frozenset(modules)


@functools.cache
def module_file(module: str) -> Path | None:
    """The repository's file of a module, if it is one of Plop's."""
    base = REPO.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file() and ".venv" not in candidate.parts:
            return candidate
    return None


def reachable_imports(start: Path) -> dict[str, Path]:
    """Every module imported from ``start``, directly or through Plop's own modules,
    with the file that imports it."""
    seen: dict[str, Path] = {}
    pending = [start]
    visited: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in visited:
            continue
        visited.add(path)
        for module in imported_modules(path):
            seen.setdefault(module, path)
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):
                if (found := module_file(".".join(parts[:depth]))) is not None:
                    pending.append(found)
    return seen


def test_services_import_no_graphql_transport_push_or_composition() -> None:
    """Not directly, and not through any module of Plop's they import."""
    offending = {
        f"{path.relative_to(REPO)} reaches {module} (imported by {by.relative_to(REPO)})"
        for path in sorted((REPO / "services").rglob("*.py"))
        for module, by in reachable_imports(path).items()
        if module.split(".")[0] in FORBIDDEN_IN_SERVICES
    }
    assert not offending, sorted(offending)


def test_live_delivery_reads_no_store_and_knows_no_graphql() -> None:
    """live/ holds the rules of delivery; the store and the rendering are given to it."""
    offending = {
        f"{path.relative_to(REPO)} reaches {module} (imported by {by.relative_to(REPO)})"
        for path in sorted((REPO / "live").rglob("*.py"))
        for module, by in reachable_imports(path).items()
        if module.split(".")[0] in FORBIDDEN_IN_LIVE
    }
    assert not offending, sorted(offending)


def test_the_walk_sees_an_offending_import(tmp_path: Path) -> None:
    """The check itself can fail: a module that imports strawberry is reported."""
    sample = tmp_path / "sample.py"
    sample.write_text("import strawberry\nfrom push.worker import PushWorker\n")
    assert {"strawberry", "push.worker"} <= imported_modules(sample)


def test_tests_and_bench_share_nothing_but_bench_unit_tests() -> None:
    """The suite drives bench/ as users do (``python -m bench``), and bench/ never
    leans on the test harness; only the unit tests of bench's own pure parts
    (tests/test_bench*.py) import it. What both need lives in devtools/."""
    offending = [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "bench").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] == "tests"
    ]
    offending += [
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "tests").rglob("*.py"))
        if not path.name.startswith("test_bench")
        for module in imported_modules(path)
        if module.split(".")[0] == "bench"
    ]
    assert not offending, offending
