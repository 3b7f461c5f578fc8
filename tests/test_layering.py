"""Imports flow one way: services hold the rules and know nothing of GraphQL, the
transport, push delivery or the process's composition."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What services/ may never import, directly or by a submodule.
FORBIDDEN_IN_SERVICES = ("strawberry", "graphql", "push", "transport", "schema", "resolvers", "app")


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_services_import_no_graphql_transport_push_or_composition() -> None:
    offending = {
        f"{path.relative_to(REPO)} imports {module}"
        for path in sorted((REPO / "services").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in FORBIDDEN_IN_SERVICES
    }
    assert not offending, sorted(offending)


def test_the_walk_sees_an_offending_import(tmp_path: Path) -> None:
    """The check itself can fail: a module that imports strawberry is reported."""
    sample = tmp_path / "sample.py"
    sample.write_text("import strawberry\nfrom push.worker import PushWorker\n")
    assert {"strawberry", "push.worker"} <= imported_modules(sample)


def test_tests_and_bench_do_not_import_each_other() -> None:
    for folder, other in (("tests", "bench"), ("bench", "tests")):
        offending = [
            f"{path.relative_to(REPO)} imports {module}"
            for path in sorted((REPO / folder).rglob("*.py"))
            for module in imported_modules(path)
            if module.split(".")[0] == other
        ]
        assert not offending, offending
