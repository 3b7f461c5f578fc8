"""The served schema is a superset of the public contract (design/api.graphql).

The served SDL is exported to ``schema.graphql`` at the top of the repository by
``python -m schema.export`` and committed; this test fails when the file is stale.
Contract operations and types that are not built yet are listed in NOT_YET_SERVED:
the test prints that list, and it may only shrink (a listed name that is served now
fails the test until it is removed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
)

from schema.export import EXPORT_COMMAND, EXPORTED, served_sdl
from schema.root import build_schema as build_plop_schema

REPO = Path(__file__).resolve().parents[1]
# Beside the checkout (…/main, …/shared), or a level further up from a worktree.
CONTRACT = next(
    (
        candidate
        for parent in REPO.parents
        if (candidate := parent / "shared" / "design" / "api.graphql").exists()
    ),
    REPO.parent / "shared" / "design" / "api.graphql",
)

# Contract v1.2's names that are not built yet: a type by its name, a field as
# "Type.field", an argument as "Type.field(argument)", a union's member as
# "Union|Member".
NOT_YET_SERVED: frozenset[str] = frozenset()


def served_schema() -> GraphQLSchema:
    schema: GraphQLSchema = build_plop_schema()._schema
    return schema


def _kind(named: GraphQLNamedType) -> str:
    """What kind of type this is (servers may use subclasses of graphql-core's types)."""
    for kind in (
        GraphQLObjectType,
        GraphQLInterfaceType,
        GraphQLInputObjectType,
        GraphQLEnumType,
        GraphQLUnionType,
    ):
        if isinstance(named, kind):
            return kind.__name__
    return "scalar"


def _fits(served: GraphQLOutputType, contract: GraphQLOutputType) -> bool:
    """A served output type fits if it is the contract's, or a non-null of it."""
    if str(served) == str(contract):
        return True
    return isinstance(served, GraphQLNonNull) and str(served.of_type) == str(contract)


def contract_gaps(served: GraphQLSchema, contract: GraphQLSchema) -> tuple[list[str], set[str]]:
    """(what the contract has that is not served as it says, what is listed yet served)."""
    gaps: list[str] = []
    served_but_listed: set[str] = set()
    for name, contract_type in contract.type_map.items():
        if name.startswith("__"):
            continue
        served_type: GraphQLNamedType | None = served.type_map.get(name)
        if name in NOT_YET_SERVED:
            if served_type is not None:
                served_but_listed.add(name)
            continue
        if served_type is None or _kind(served_type) != _kind(contract_type):
            gaps.append(f"type {name}: missing or of another kind")
            continue
        if isinstance(contract_type, GraphQLEnumType):
            assert isinstance(served_type, GraphQLEnumType)
            if missing := set(contract_type.values) - set(served_type.values):
                gaps.append(f"enum {name}: values {sorted(missing)} missing")
        if isinstance(contract_type, GraphQLUnionType):
            assert isinstance(served_type, GraphQLUnionType)
            served_members = {t.name for t in served_type.types}
            for member in {t.name for t in contract_type.types}:
                if f"{name}|{member}" in NOT_YET_SERVED:
                    if member in served_members:
                        served_but_listed.add(f"{name}|{member}")
                elif member not in served_members:
                    gaps.append(f"union {name}: member {member} missing")
        if isinstance(
            contract_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType
        ):
            assert isinstance(
                served_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType
            )
            for field_name, field in contract_type.fields.items():
                path = f"{name}.{field_name}"
                served_field = served_type.fields.get(field_name)
                if path in NOT_YET_SERVED:
                    if served_field is not None:
                        served_but_listed.add(path)
                    continue
                if served_field is None:
                    gaps.append(f"field {path}: missing")
                    continue
                if not _fits(served_field.type, field.type):
                    gaps.append(f"field {path}: {served_field.type} does not fit {field.type}")
                contract_args = getattr(field, "args", {})
                served_args = getattr(served_field, "args", {})
                for arg_name, arg in contract_args.items():
                    served_arg = served_args.get(arg_name)
                    if f"{path}({arg_name})" in NOT_YET_SERVED:
                        if served_arg is not None:
                            served_but_listed.add(f"{path}({arg_name})")
                        continue
                    if served_arg is None or str(served_arg.type) != str(arg.type):
                        gaps.append(f"argument {path}({arg_name}): missing or not {arg.type}")
                for arg_name, served_arg in served_args.items():
                    if arg_name not in contract_args and isinstance(
                        served_arg.type, GraphQLNonNull
                    ):
                        gaps.append(
                            f"argument {path}({arg_name}): required but not in the contract"
                        )
    return gaps, served_but_listed


def test_served_schema_is_a_superset_of_the_contract() -> None:
    assert CONTRACT.exists(), f"the contract is missing: {CONTRACT}"
    gaps, served_but_listed = contract_gaps(served_schema(), build_schema(CONTRACT.read_text()))
    print("Contract names not served yet:\n  " + "\n  ".join(sorted(NOT_YET_SERVED)))  # noqa: T201
    assert not gaps, "the served schema breaks the contract:\n" + "\n".join(gaps)
    assert not served_but_listed, (
        f"served now, remove from NOT_YET_SERVED: {sorted(served_but_listed)}"
    )


def test_exported_schema_graphql_is_current() -> None:
    # Compares only: a check run (CI) must fail on a stale export, never repair it.
    exported = EXPORTED.read_text() if EXPORTED.exists() else ""
    assert exported == served_sdl(), (
        f"schema.graphql is stale: run `{EXPORT_COMMAND}` and commit schema.graphql"
    )


def test_export_command_writes_the_served_sdl(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    done = subprocess.run(
        [sys.executable, "-m", "schema.export", str(target)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert target.read_text() == served_sdl()


def test_contract_check_finds_a_renamed_field() -> None:
    renamed = build_schema(
        CONTRACT.read_text().replace("type Query {\n  me: User!", "type Query {\n  viewer: User!")
    )
    gaps, _ = contract_gaps(renamed, build_schema(CONTRACT.read_text()))
    assert "field Query.me: missing" in gaps
