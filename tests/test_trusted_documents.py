"""Trusted documents (PLOP_TRUSTED_DOCUMENTS): only a manifest's documents run, named by
hash or sent in full, over HTTP and both WebSocket subprotocols; the manifest's forms."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from devtools.processes import free_port, plain_env, plop_argv
from errors import ConfigError
from services.trusted_documents import load_trusted_documents, trusted_documents
from tests.support.chat import CREATE_DIRECT, MESSAGE_ADDED, ROOM_ADDED, SEND
from tests.support.clients import SIGN_UP, SUBPROTOCOLS, TRANSPORT_WS, Account, unique_name
from tests.support.persisted import (
    error_code_of,
    get,
    persisted,
    post,
    sha256_of,
    socket_error_code,
    socket_operation,
)
from tests.support.raw_socket import raw_socket
from tests.support.server import ServerProcess

ME = "query Me { me { id username } }"
LISTED = {"SignUp": SIGN_UP, "CreateDirect": CREATE_DIRECT, "Send": SEND}
LISTED_SUBSCRIPTION = MESSAGE_ADDED
UNLISTED = "query { me { id } }"
# A server that refuses its settings exits within this (it starts nothing first).
START_TIMEOUT_SECONDS = 60.0


def apollo_manifest(documents: dict[str, str]) -> dict[str, Any]:
    """Apollo's persisted-query manifest of these documents, by name."""
    return {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha256_of(body), "name": name, "type": "query", "body": body}
            for name, body in documents.items()
        ],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trusted_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ServerProcess]:
    """An embedded server that runs the manifest's documents only."""
    manifest = tmp_path_factory.mktemp("trusted") / "manifest.json"
    documents = {**LISTED, "Me": ME, "MessageAdded": LISTED_SUBSCRIPTION}
    manifest.write_text(json.dumps(apollo_manifest(documents)))
    server = ServerProcess(
        f"trusted-{secrets.token_hex(3)}", {"PLOP_TRUSTED_DOCUMENTS": str(manifest)}
    )
    await server.start()
    yield server
    await server.stop()


async def listed_sign_up(server: ServerProcess) -> Account:
    """A fresh user, signed up with the listed document sent in full."""
    variables = {"username": unique_name("trusted"), "password": "correct horse battery"}
    data = (await post(server, {"query": SIGN_UP, "variables": variables}))["data"]["signUp"]
    user = data["user"]
    return Account(data["token"], user["id"], user["username"], user["displayName"])


async def test_only_listed_documents_run_over_http(trusted_server: ServerProcess) -> None:
    account = await listed_sign_up(trusted_server)
    me = {"data": {"me": {"id": account.id, "username": account.username}}}
    sha = sha256_of(ME)
    by_hash = await post(trusted_server, {"extensions": persisted(sha)}, account.token)
    by_document_id = await post(trusted_server, {"documentId": f"sha256:{sha}"}, account.token)
    in_full = await post(trusted_server, {"query": ME}, account.token)
    assert by_hash == by_document_id == in_full == me
    over_get = await get(trusted_server, {"documentId": f"sha256:{sha}"}, account.token)
    assert over_get.json() == me

    for refused in (
        {"query": UNLISTED},
        {"extensions": persisted(sha256_of(UNLISTED))},
        {"documentId": f"sha256:{sha256_of(UNLISTED)}"},
        # A registration, as Apollo's link would try after a refusal: nothing is stored.
        {"query": UNLISTED, "extensions": persisted(sha256_of(UNLISTED))},
        {"extensions": persisted(sha256_of(UNLISTED))},
    ):
        answer = await post(trusted_server, refused, account.token)
        assert error_code_of(answer) == "PERSISTED_QUERY_NOT_ALLOWED", refused

    for malformed in (
        {"query": UNLISTED, "extensions": persisted(sha)},  # a listed hash, another text
        {"documentId": sha},  # no "sha256:"
        {"documentId": f"md5:{sha[:32]}"},
        {"documentId": 42},
    ):
        answer = await post(trusted_server, malformed, account.token)
        assert error_code_of(answer) == "BAD_USER_INPUT", malformed


async def test_graphiql_still_loads_with_trusted_documents(trusted_server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        page = await client.get(trusted_server.http_url, headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    # Its introspection query is no trusted document: refused like any other.
    introspection = await post(trusted_server, {"query": "{ __schema { queryType { name } } }"})
    assert error_code_of(introspection) == "PERSISTED_QUERY_NOT_ALLOWED"


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_only_listed_documents_run_over_sockets(
    trusted_server: ServerProcess, subprotocol: str
) -> None:
    alice = await listed_sign_up(trusted_server)
    bob = await listed_sign_up(trusted_server)
    room = await post(
        trusted_server, {"query": CREATE_DIRECT, "variables": {"u": bob.id}}, alice.token
    )
    room_id = room["data"]["createDirectRoom"]["id"]
    sent = await post(
        trusted_server,
        {"query": SEND, "variables": {"r": room_id, "t": "listed", "c": None}},
        bob.token,
    )
    seq = sent["data"]["sendMessage"]["seq"]
    variables = {"r": room_id, "after": 0}
    async with raw_socket(trusted_server, subprotocol, alice.token) as socket:
        for refused in (
            {"query": ROOM_ADDED},
            {"extensions": persisted(sha256_of(ROOM_ADDED))},
            {"documentId": f"sha256:{sha256_of(ROOM_ADDED)}"},
        ):
            frame = await socket_operation(socket, refused)
            assert socket_error_code(frame) == "PERSISTED_QUERY_NOT_ALLOWED", refused
        for listed in (
            {"extensions": persisted(sha256_of(LISTED_SUBSCRIPTION)), "variables": variables},
            {"documentId": f"sha256:{sha256_of(LISTED_SUBSCRIPTION)}", "variables": variables},
            {"query": LISTED_SUBSCRIPTION, "variables": variables},
        ):
            frame = await socket_operation(socket, listed)
            assert frame["type"] in ("next", "data"), frame
            assert frame["payload"]["data"]["messageAdded"]["seq"] == seq
        if subprotocol == TRANSPORT_WS:  # graphql-ws streams subscriptions only
            me = await socket_operation(socket, {"extensions": persisted(sha256_of(ME))})
            assert me["payload"]["data"]["me"]["id"] == alice.id


def test_a_manifest_is_read_in_apollo_form_and_as_a_map_of_hashes(tmp_path: Path) -> None:
    sha = sha256_of(ME)
    assert trusted_documents(apollo_manifest({"Me": ME})) == {sha: ME}
    assert trusted_documents({f"sha256:{sha}": ME}) == {sha: ME}
    assert trusted_documents({sha: ME}) == {sha: ME}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({f"sha256:{sha}": ME}))
    assert load_trusted_documents(manifest) == {sha: ME}


@pytest.mark.parametrize(
    "manifest",
    [
        [ME],
        {"not-its-hash": ME},
        {sha256_of(ME): 42},
        {"format": "apollo-persisted-query-manifest", "version": 2, "operations": []},
        {"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id": "x"}]},
        {
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{"id": "made-up", "name": "Me", "type": "query", "body": ME}],
        },
    ],
)
def test_a_manifest_that_names_documents_otherwise_is_refused_at_start_up(
    manifest: object,
) -> None:
    with pytest.raises(ConfigError):
        trusted_documents(manifest)


def test_a_manifest_that_cannot_be_read_is_refused_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    for path in (tmp_path / "missing.json", tmp_path / "broken.json"):
        with pytest.raises(ConfigError):
            load_trusted_documents(path)


async def test_a_batch_runs_nothing(trusted_server: ServerProcess) -> None:
    """No list of operations gets by the list of documents."""
    batch = [{"query": UNLISTED}, {"query": "{ __typename }"}]
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(trusted_server.http_url, json=batch)
    assert response.status_code == 400
    assert "data" not in response.json()


async def test_a_server_with_an_unreadable_manifest_does_not_start(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"not-its-hash": ME}))
    env = {**plain_env(), "PLOP_TRUSTED_DOCUMENTS": str(manifest)}
    process = await asyncio.create_subprocess_exec(
        *plop_argv(free_port()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(START_TIMEOUT_SECONDS):
        stdout, stderr = await process.communicate()
    assert process.returncode != 0
    assert "is not named by its sha256" in (stdout + stderr).decode()
