"""Every Query and Mutation argument, fuzzed: typed and ill-typed values, with and
without a session.

The schema is read by introspection from the running server, so a new field or
argument is fuzzed without a change here. Each call must answer with contract codes
only (never INTERNAL), the server must keep serving, and its log must hold no ERROR
and no traceback. Hypothesis runs derandomized, so a failure reproduces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.messages import MESSAGE_CURSOR
from services.paging import encode_cursor
from services.rooms import ROOM_CURSOR
from tests.support.chat import group_room, send
from tests.support.clients import sign_up
from tests.support.server import ServerProcess
from tests.test_hostile_input import LOGGED_ERROR

CONTRACT_CODES = {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "BAD_USER_INPUT",
    "CONFLICT",
    "RATE_LIMITED",
    "UNAVAILABLE",
}
# Calls per server: with both servers, about a minute of the suite on two cores.
EXAMPLES_PER_SERVER = 300
# Fields that end the caller's session: fuzzed without the shared session, so that
# the calls after them still run as a signed-in user.
SESSION_ENDING_FIELDS = {"logOut"}

TYPE_REF = "kind name ofType { kind name ofType { kind name ofType { kind name } } }"
INTROSPECTION = f"""
{{
  __schema {{
    queryType {{ name }}
    mutationType {{ name }}
    types {{
      kind name
      enumValues {{ name }}
      inputFields {{ name type {{ {TYPE_REF} }} }}
      fields {{ name type {{ {TYPE_REF} }} args {{ name type {{ {TYPE_REF} }} }} }}
    }}
  }}
}}
"""

TypeRef = dict[str, Any]


@dataclass(frozen=True)
class RootField:
    operation: str  # "query" or "mutation"
    name: str
    args: tuple[tuple[str, TypeRef], ...]
    composite: bool  # needs a selection

    def document(self, present: list[str]) -> str:
        """An operation that passes each present argument as a variable of its type."""
        types = dict(self.args)
        definitions = ", ".join(f"${name}: {type_text(types[name])}" for name in present)
        arguments = ", ".join(f"{name}: ${name}" for name in present)
        head = f"{self.operation}({definitions})" if present else self.operation
        call = f"{self.name}({arguments})" if present else self.name
        return f"{head} {{ {call}{' { __typename }' if self.composite else ''} }}"


def type_text(ref: TypeRef) -> str:
    if ref["kind"] == "NON_NULL":
        return f"{type_text(ref['ofType'])}!"
    if ref["kind"] == "LIST":
        return f"[{type_text(ref['ofType'])}]"
    name: str = ref["name"]
    return name


def named(ref: TypeRef) -> TypeRef:
    while ref["kind"] in ("NON_NULL", "LIST"):
        ref = ref["ofType"]
    return ref


def root_fields(schema: dict[str, Any]) -> tuple[list[RootField], dict[str, dict[str, Any]]]:
    types = {entry["name"]: entry for entry in schema["types"]}
    roots = [("query", schema["queryType"]["name"]), ("mutation", schema["mutationType"]["name"])]
    fields = [
        RootField(
            operation,
            field["name"],
            tuple((arg["name"], arg["type"]) for arg in field["args"]),
            named(field["type"])["kind"] in ("OBJECT", "INTERFACE", "UNION"),
        )
        for operation, type_name in roots
        for field in types[type_name]["fields"]
    ]
    return fields, types


@dataclass(frozen=True)
class Known:
    """Ids and cursors that exist, so typed values reach past "no such thing"."""

    ids: tuple[str, ...]
    cursors: tuple[str, ...]


ODD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\ud800",
        "a\udfffb",
        "\u0663",
        "\u202eevil",
        "\x00",
        "x" * 5_000,
        "0" * 24,
        "ffffffffffffffffffffffff",
        "null",
        "$x",
        "{ me { id } }",
    ]
)
ILL_TYPED = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | ODD_STRINGS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def typed(ref: TypeRef, types: dict[str, dict[str, Any]], known: Known) -> st.SearchStrategy[Any]:
    """Values of the argument's type (some of them odd, none ill-typed)."""
    if ref["kind"] == "NON_NULL":
        return typed(ref["ofType"], types, known).filter(lambda value: value is not None)
    inner: st.SearchStrategy[Any]
    if ref["kind"] == "LIST":
        inner = st.lists(typed(ref["ofType"], types, known), max_size=4)
    elif ref["kind"] == "ENUM":
        inner = st.sampled_from([value["name"] for value in types[ref["name"]]["enumValues"]])
    elif ref["kind"] == "INPUT_OBJECT":
        inner = st.fixed_dictionaries(
            {
                field["name"]: typed(field["type"], types, known)
                for field in types[ref["name"]]["inputFields"]
            }
        )
    elif ref["name"] == "Int":
        inner = st.integers(min_value=-5, max_value=150) | st.integers(
            min_value=-(2**31), max_value=2**31 - 1
        )
    elif ref["name"] == "Float":
        inner = st.floats(allow_nan=False, allow_infinity=False)
    elif ref["name"] == "Boolean":
        inner = st.booleans()
    elif ref["name"] == "ID":
        inner = st.sampled_from(known.ids) | st.text(max_size=30) | ODD_STRINGS
    else:  # String and any other scalar
        inner = (
            st.text(max_size=40)
            | ODD_STRINGS
            | st.sampled_from(known.cursors)
            | st.builds(encode_cursor, st.sampled_from([MESSAGE_CURSOR, ROOM_CURSOR]), st.text())
        )
    return st.none() | inner


@dataclass(frozen=True)
class FieldPlan:
    """A root field with the strategy of each argument, built once for the whole run:
    a strategy built per call is validated anew each time, which costs the fuzz more
    than its HTTP calls."""

    field: RootField
    args: tuple[tuple[str, TypeRef, st.SearchStrategy[Any]], ...]
    ill_typed: st.SearchStrategy[str | None]  # the argument that may get an ill-typed value


def plans(
    fields: list[RootField], types: dict[str, dict[str, Any]], known: Known
) -> list[FieldPlan]:
    return [
        FieldPlan(
            field,
            tuple((name, ref, typed(ref, types, known)) for name, ref in field.args),
            st.sampled_from([None, *(name for name, _ in field.args)]),
        )
        for field in fields
    ]


@st.composite
def calls(draw: st.DrawFn, plans: list[FieldPlan]) -> tuple[RootField, dict[str, Any], bool]:
    """A root field, its variables (one ill-typed now and then), and whether signed in."""
    plan = draw(st.sampled_from(plans))
    field = plan.field
    variables: dict[str, Any] = {}
    ill_typed = draw(plan.ill_typed)
    for name, ref, values in plan.args:
        if name == ill_typed and draw(st.integers(0, 2)) == 0:
            variables[name] = draw(ILL_TYPED)
        elif ref["kind"] == "NON_NULL" or draw(st.booleans()):
            variables[name] = draw(values)
    signed_in = draw(st.integers(0, 4)) > 0 and field.name not in SESSION_ENDING_FIELDS
    return field, variables, signed_in


def post(
    client: httpx.Client, server: ServerProcess, body: dict[str, Any], token: str | None
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    # json.dumps escapes lone surrogates, as a client's JSON encoder would send them.
    return client.post(server.http_url, content=json.dumps(body), headers=headers)


async def test_every_argument_fuzzed_answers_only_contract_codes(any_server: ServerProcess) -> None:
    viewer, other = await sign_up(any_server), await sign_up(any_server)
    room_id = await group_room(any_server, viewer, [other])
    await send(any_server, viewer, room_id, "hello")
    known = Known(
        ids=(viewer.id, other.id, room_id, "0123456789abcdef01234567"),
        cursors=(
            encode_cursor(MESSAGE_CURSOR, "1"),
            encode_cursor(MESSAGE_CURSOR, "\u0663"),
            encode_cursor(MESSAGE_CURSOR, "9" * 5_000),
            encode_cursor(ROOM_CURSOR, "1700000000000", room_id),
            encode_cursor(ROOM_CURSOR, "9" * 18, room_id),
        ),
    )
    log_start = any_server.log_size()
    # The server runs in its own process: blocking calls here stall nothing it needs.
    with httpx.Client(timeout=30) as client:
        introspected = post(client, any_server, {"query": INTROSPECTION}, None).json()
        fields, types = root_fields(introspected["data"]["__schema"])
        assert {"messages", "sendMessage", "signUp"} <= {field.name for field in fields}
        seen: dict[str, int] = {}

        @settings(
            max_examples=EXAMPLES_PER_SERVER,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(calls(plans(fields, types, known)))
        def check(call: tuple[RootField, dict[str, Any], bool]) -> None:
            field, variables, signed_in = call
            present = list(variables)
            document = field.document(present)
            response = post(
                client,
                any_server,
                {"query": document, "variables": variables},
                viewer.token if signed_in else None,
            )
            assert response.status_code == 200, (document, variables, response.text)
            errors = response.json().get("errors") or []
            if not errors:
                seen["ok"] = seen.get("ok", 0) + 1
            for error in errors:
                code = (error.get("extensions") or {}).get("code")
                assert code in CONTRACT_CODES, (document, variables, error)
                seen[code] = seen.get(code, 0) + 1

        check()
        alive = post(client, any_server, {"query": "{ __typename }"}, None).json()
    assert alive == {"data": {"__typename": "Query"}}
    logged = any_server.log_since(log_start)
    assert not LOGGED_ERROR.search(logged), logged[-4000:]
    # The fuzz reached past the auth check and the type checks, into the resolvers.
    assert {"BAD_USER_INPUT", "UNAUTHENTICATED", "NOT_FOUND"} <= set(seen), seen
    assert seen.get("ok", 0) > EXAMPLES_PER_SERVER // 20, seen
