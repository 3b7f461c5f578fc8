"""GraphQL over HTTP: graphql-http's conformance audit, and the media types and
status codes it rests on, against a real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.support.server import ServerProcess
from tests.support.services import REPO

AUDIT_SCRIPT = REPO / "scripts" / "http-audit.sh"
# npm ci on a fresh machine, then some 50 requests.
AUDIT_TIMEOUT_SECONDS = 150.0
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


async def run_audit(url: str) -> list[dict[str, Any]]:
    """graphql-http's server audits against the URL: one result per audit."""
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(AUDIT_SCRIPT),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(AUDIT_TIMEOUT_SECONDS):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"the audit did not run:\n{stderr.decode(errors='replace')}"
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


async def post(
    server: ServerProcess, body: object, accept: str | None = GRAPHQL_RESPONSE_JSON
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if accept is not None:
        headers["accept"] = accept
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(server.http_url, content=json.dumps(body), headers=headers)


async def test_every_must_and_should_of_the_graphql_http_audit_passes(
    embedded_server: ServerProcess,
) -> None:
    results = await run_audit(embedded_server.http_url)
    required = [r for r in results if r["name"].startswith(("MUST ", "SHOULD "))]
    for level in ("MUST", "SHOULD"):
        of_level = [r for r in required if r["name"].startswith(f"{level} ")]
        passed = sum(r["status"] == "ok" for r in of_level)
        print(f"graphql-http audit: {level} {passed}/{len(of_level)}")  # noqa: T201
    failures = [r for r in required if r["status"] != "ok"]
    for failure in failures:
        print(json.dumps(failure))  # noqa: T201
    assert len(required) >= 30, f"the audit ran only {len(required)} MUST/SHOULD audits"
    assert not failures, "\n".join(f"{f['id']} {f['name']}: {f['reason']}" for f in failures)


async def test_graphql_response_json_is_answered_in_kind(embedded_server: ServerProcess) -> None:
    response = await post(embedded_server, {"query": "{ __typename }"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_plain_json_is_the_default_and_preferred_by_quality(
    embedded_server: ServerProcess,
) -> None:
    for accept in (None, "*/*", "application/json", f"{GRAPHQL_RESPONSE_JSON};q=0.5, */*"):
        response = await post(embedded_server, {"query": "{ __typename }"}, accept=accept)
        assert response.status_code == 200, accept
        assert response.headers["content-type"].startswith("application/json"), accept


async def test_a_document_that_fails_to_parse_is_a_400_without_data(
    embedded_server: ServerProcess,
) -> None:
    response = await post(embedded_server, {"query": "{"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_an_invalid_document_or_variable_is_a_400_without_data(
    embedded_server: ServerProcess,
) -> None:
    unknown_field = await post(embedded_server, {"query": "{ noSuchField }"})
    assert unknown_field.status_code == 400
    assert "data" not in unknown_field.json()
    bad_variable = await post(
        embedded_server,
        {"query": "query Q($id: ID!) { room(id: $id) { id } }", "variables": {"id": None}},
    )
    assert bad_variable.status_code == 400
    assert "data" not in bad_variable.json()


async def test_a_field_error_keeps_status_200_and_its_data_entry(
    embedded_server: ServerProcess,
) -> None:
    response = await post(embedded_server, {"query": "{ me { id } }"})
    assert response.status_code == 200
    body = response.json()
    assert "data" in body
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_request_errors_stay_200_for_plain_json_clients(
    embedded_server: ServerProcess,
) -> None:
    response = await post(embedded_server, {"query": "{"}, accept="application/json")
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_body_that_is_not_json_is_a_400_graphql_error(
    embedded_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            embedded_server.http_url,
            content=b'{ "not json',
            headers={"content-type": "application/json", "accept": GRAPHQL_RESPONSE_JSON},
        )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    assert response.json()["errors"][0]["message"]


async def test_a_mutation_over_get_is_refused_with_405(embedded_server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            embedded_server.http_url,
            params={"query": "mutation { logOut }"},
            headers={"accept": GRAPHQL_RESPONSE_JSON},
        )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["message"]
