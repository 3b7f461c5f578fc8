"""Requests that name their document by its sha256, as Apollo's link and the
GraphQL-over-HTTP persisted documents appendix send them, over raw HTTP and sockets."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import httpx

from tests.support.raw_socket import RawSocket
from tests.support.server import ServerProcess


def sha256_of(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


def fresh_query(size: int = 0) -> str:
    """A query no one sent before (its own operation name), padded with a comment to
    about ``size`` bytes: a hash no server holds yet."""
    document = f"query Fresh_{secrets.token_hex(6)} {{ __typename }}"
    if size > len(document):
        document += "\n#" + "x" * (size - len(document) - 2)
    return document


def persisted(sha256_hash: str) -> dict[str, Any]:
    """Apollo's extensions naming a document by its hash."""
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256_hash}}


async def post(
    server: ServerProcess, body: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    """One POST as Apollo's HttpLink sends it; the JSON answer (200 with
    ``application/json``, whatever it says)."""
    headers = {"content-type": "application/json", "accept": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(server.http_url, content=json.dumps(body), headers=headers)
    assert response.status_code == 200, (response.status_code, response.text)
    answer: dict[str, Any] = response.json()
    return answer


async def get(
    server: ServerProcess, params: dict[str, Any], token: str | None = None
) -> httpx.Response:
    """One GET with the operation in the query string (objects as JSON)."""
    headers = {"accept": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    query = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(server.http_url, params=query, headers=headers)


def error_code_of(answer: dict[str, Any]) -> str:
    """The code of the only error of an answer that ran nothing."""
    assert answer.get("data") is None, answer
    (error,) = answer["errors"]
    code: str = error["extensions"]["code"]
    return code


async def socket_operation(
    socket: RawSocket, payload: dict[str, Any], operation_id: str | None = None
) -> dict[str, Any]:
    """Starts an operation with this payload; its first answer frame (next/data or error)."""
    operation_id = operation_id or secrets.token_hex(4)
    await socket.start_operation(operation_id, payload)
    while True:
        frame = await socket.frame()
        if frame.get("id") == operation_id and frame["type"] != "complete":
            return frame


def socket_error_code(frame: dict[str, Any]) -> str:
    """The code of an operation's ``error`` frame, on either subprotocol."""
    assert frame["type"] == "error", frame
    payload = frame["payload"]
    error = payload[0] if isinstance(payload, list) else payload
    code: str = error["extensions"]["code"]
    return code
