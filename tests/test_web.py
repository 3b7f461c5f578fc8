"""The web pages over plain HTTP: every file they load is this server's, and the
GraphiQL and introspection settings turn both off."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.conftest import RUN_ID
from tests.support.server import ServerProcess

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# src= and href= of the pages' own markup.
ASSET_REFERENCE = re.compile(r"""(?:src|href)="([^"]+)\"""")
INTROSPECTION = "{ __schema { queryType { name } } }"
TYPE_INTROSPECTION = '{ __type(name: "Query") { name } }'


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def locked_down_server() -> AsyncIterator[ServerProcess]:
    """The embedded default with GraphiQL and introspection off, as in production."""
    server = ServerProcess(
        f"{RUN_ID}-locked-down", {"PLOP_GRAPHIQL": "false", "PLOP_INTROSPECTION": "false"}
    )
    await server.start()
    yield server
    await server.stop()


async def page_assets(client: httpx.AsyncClient, path: str) -> list[str]:
    page = await client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    return [ref for ref in ASSET_REFERENCE.findall(page.text) if not ref.startswith("data:")]


@pytest.mark.parametrize("path", ["/graphql", "/"])
async def test_page_loads_only_files_served_by_this_server(
    embedded_server: ServerProcess, path: str
) -> None:
    async with httpx.AsyncClient(base_url=embedded_server.base_url, timeout=10) as client:
        assets = await page_assets(client, path)
        assert assets, "the page loads no files at all"
        for asset in assets:
            # Root-relative: the browser asks this server, never another host.
            assert asset.startswith("/") and not asset.startswith("//"), asset
            if asset.startswith("/web/"):
                response = await client.get(asset)
                assert response.status_code == 200, asset
                assert len(response.content) > 0, asset


@pytest.mark.parametrize("path", ["/graphql", "/"])
async def test_page_tells_the_browser_to_load_nothing_from_elsewhere(
    embedded_server: ServerProcess, path: str
) -> None:
    async with httpx.AsyncClient(base_url=embedded_server.base_url, timeout=10) as client:
        page = await client.get(path, headers={"Accept": BROWSER_ACCEPT})
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy


async def test_graphiql_loads_the_vendored_graphiql_react_and_explorer(
    embedded_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(base_url=embedded_server.base_url, timeout=10) as client:
        assets = await page_assets(client, "/graphql")
    names = {asset.rsplit("/", 1)[-1] for asset in assets}
    assert {
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
        "index.umd.js",
    } <= names


async def test_graphiql_off_answers_a_browser_with_not_found(
    locked_down_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(locked_down_server.http_url, headers={"Accept": BROWSER_ACCEPT})
        # Nor is the page to be had as a file.
        as_file = await client.get(f"{locked_down_server.base_url}/web/graphiql.html")
    assert page.status_code == 404
    assert as_file.status_code == 404


@pytest.mark.parametrize("query", [INTROSPECTION, TYPE_INTROSPECTION])
async def test_introspection_off_refuses_schema_queries_as_bad_user_input(
    locked_down_server: ServerProcess, query: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(locked_down_server.http_url, json={"query": query})
    body = response.json()
    assert body.get("data") is None
    # graphql-core names each introspection field of the query in an error of its own.
    assert {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}
    assert "introspection has been disabled" in body["errors"][0]["message"]


async def test_introspection_off_still_answers_typename_and_queries(
    locked_down_server: ServerProcess,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(locked_down_server.http_url, json={"query": "{ __typename }"})
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_introspection_is_on_by_default(embedded_server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(embedded_server.http_url, json={"query": INTROSPECTION})
    assert response.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
