"""Documents named by their hash, read off the wire before strawberry sees the operation.

A request names its document by Apollo's ``extensions.persistedQuery`` (``{"version":
1, "sha256Hash": "<hex>"}``) or by the GraphQL-over-HTTP persisted documents
appendix's ``documentId`` (``"sha256:<hex>"``), over HTTP (a POST body, or a GET's
query string) and in a socket's ``subscribe`` (graphql-transport-ws) or ``start``
(graphql-ws) payload. ``services.persisted_documents`` says what runs; this module
only reads the request and puts the document where strawberry reads its query, or
turns a refusal into the GraphQL error the client gets (nothing executed).
"""

from __future__ import annotations

import json
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult

from errors import BadUserInput, PlopError
from schema.context import Context
from schema.errors import plop_error_for

PERSISTED_QUERY = "persistedQuery"
DOCUMENT_ID = "documentId"
SHA256_ID_PREFIX = "sha256:"


def named_hash(extensions: object, document_id: object) -> str | None:
    """The sha256 the request names its document by, if any; BAD_USER_INPUT when the
    naming itself is malformed."""
    if isinstance(extensions, dict) and (persisted := extensions.get(PERSISTED_QUERY)) is not None:
        if not isinstance(persisted, dict):
            raise BadUserInput("extensions.persistedQuery must be an object")
        if persisted.get("version") != 1:
            raise BadUserInput("Unsupported persisted query version")
        sha256_hash = persisted.get("sha256Hash")
        if not isinstance(sha256_hash, str):
            raise BadUserInput("extensions.persistedQuery.sha256Hash must be a string")
        return sha256_hash
    if document_id is None:
        return None
    if not isinstance(document_id, str) or not document_id.startswith(SHA256_ID_PREFIX):
        raise BadUserInput('documentId must be "sha256:" and the document\'s sha256')
    return document_id.removeprefix(SHA256_ID_PREFIX)


def names_a_document(extensions: object, has_document_id: bool) -> bool:
    """Whether a request names its document by hash (cheap: no parsing)."""
    return has_document_id or (isinstance(extensions, dict) and PERSISTED_QUERY in extensions)


def error_body(error: PlopError) -> dict[str, Any]:
    """A refusal as a GraphQL error (what ``schema.errors`` makes of a PlopError)."""
    return {"message": error.message, "extensions": {"code": error.code, **error.extensions}}


async def _document_id_of(request: Request) -> object:
    """A request's ``documentId``: from a GET's query string, or a POST's JSON body
    (already read and parsed once by strawberry; read again only for such requests,
    which carry no query)."""
    if request.method == "GET":
        return request.query_params.get(DOCUMENT_ID)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body.get(DOCUMENT_ID) if isinstance(body, dict) else None


async def resolved_http_request(
    request: Request, data: GraphQLRequestData, context: Context
) -> GraphQLRequestData | ExecutionResult:
    """The request with the document it names as its query, or the refusal's result.

    A request with a query and no hash costs nothing here unless the server runs
    trusted documents only.
    """
    documents = context.services.persisted_documents
    document_id = None
    if data.query is None and not names_a_document(data.extensions, False):
        document_id = await _document_id_of(request)
    if not documents.trusted_only and not names_a_document(
        data.extensions, document_id is not None
    ):
        return data
    try:
        sha256_hash = named_hash(data.extensions, document_id)
        document = await documents.document(data.query, sha256_hash, context.client_address)
    except Exception as exc:
        error = plop_error_for(exc)
        if error is None:
            raise
        body = error_body(error)
        return ExecutionResult(
            data=None, errors=[GraphQLError(body["message"], extensions=body["extensions"])]
        )
    if document is None or document is data.query:
        return data
    return GraphQLRequestData(
        query=document,
        variables=data.variables,
        operation_name=data.operation_name,
        extensions=data.extensions,
        protocol=data.protocol,
    )


async def resolved_socket_message(
    message: Any, context: Context
) -> tuple[Any, dict[str, Any] | None]:
    """A ``subscribe``/``start`` message with the document it names as its query, and
    None; or the message as it came and the error to answer its operation with.

    A message of the wrong shape is left as it is, for the handler's own checks.
    """
    if not isinstance(message, dict) or not isinstance(message.get("id"), str):
        return message, None
    payload = message.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str | None):
        return message, None
    documents = context.services.persisted_documents
    extensions = payload.get("extensions")
    document_id = payload.get(DOCUMENT_ID)
    if not documents.trusted_only and not names_a_document(extensions, document_id is not None):
        return message, None
    query = payload.get("query")
    try:
        sha256_hash = named_hash(extensions, document_id)
        document = await documents.document(query, sha256_hash, context.client_address)
    except Exception as exc:
        error = plop_error_for(exc)
        if error is None:
            raise
        return message, error_body(error)
    if document is None or document is query:
        return message, None
    return {**message, "payload": {**payload, "query": document}}, None
