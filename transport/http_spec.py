"""GraphQL over HTTP: which media type a response has, and which status code.

The GraphQL-over-HTTP spec defines two response media types:

- ``application/json`` (the legacy one, what every client understands): every
  well-formed GraphQL response is sent with 200, request errors included;
- ``application/graphql-response+json``, sent when the client's ``Accept`` asks
  for it: a *request error* (the document does not parse or validate, or the
  variables do not coerce: nothing was executed) gets 400 and no ``data`` entry;
  a response with ``data``, even with field errors, gets 200.

A request that is no GraphQL request at all (the body is not JSON, there is no
query) is refused with 400 and a GraphQL-shaped ``errors`` body in either type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"
# Media types a client may ask for that are answered with plain JSON.
_JSON_ALIASES = frozenset({JSON, "application/*", "*/*"})
_REQUEST_ERROR_KEY = "plop_graphql_request_error"


@dataclass(frozen=True, slots=True)
class _Accepted:
    media_type: str
    quality: float


def _accepted(accept: str) -> list[_Accepted]:
    """The media ranges of an ``Accept`` header with their quality (q) values."""
    ranges = []
    for item in accept.split(","):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type:
            ranges.append(_Accepted(media_type.lower(), quality))
    return ranges


def response_media_type(accept: str | None) -> str:
    """The media type to answer with: graphql-response+json when the client prefers
    it (or likes it as much as plain JSON), ``application/json`` otherwise.

    A missing header, ``*/*`` or a header naming neither type gets ``application/json``,
    as the spec asks of servers that still serve legacy clients.
    """
    graphql_quality = json_quality = 0.0
    for accepted in _accepted(accept or ""):
        if accepted.media_type == GRAPHQL_RESPONSE_JSON:
            graphql_quality = max(graphql_quality, accepted.quality)
        elif accepted.media_type in _JSON_ALIASES:
            json_quality = max(json_quality, accepted.quality)
    return (
        GRAPHQL_RESPONSE_JSON if graphql_quality > 0 and graphql_quality >= json_quality else JSON
    )


def is_request_error(result: ExecutionResult) -> bool:
    """Whether nothing was executed: the document failed to parse or validate, or the
    variables failed to coerce (graphql-core reports those without a path, before
    any field ran; every field error has a path)."""
    if isinstance(result, PreExecutionError):
        return True
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


def note_result(request: Request, result: ExecutionResult, body: GraphQLHTTPResponse) -> None:
    """Remembers, for ``finish``, whether the request's result is a request error;
    such a result has no ``data`` entry when the client takes graphql-response+json."""
    if not is_request_error(result):
        return
    setattr(request.state, _REQUEST_ERROR_KEY, True)
    if response_media_type(request.headers.get("accept")) == GRAPHQL_RESPONSE_JSON:
        body.pop("data", None)


def finish(request: Request, response: Response) -> Response:
    """Gives a JSON GraphQL response its negotiated media type and status code."""
    if not response.headers.get("content-type", "").startswith(JSON):
        return response  # GraphiQL's page, a stream: not a GraphQL JSON response
    media_type = response_media_type(request.headers.get("accept"))
    if media_type == GRAPHQL_RESPONSE_JSON:
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
        if getattr(request.state, _REQUEST_ERROR_KEY, False) and response.status_code == 200:
            response.status_code = 400
    return response


def refusal(request: Request, refused: HTTPException) -> Response:
    """A request that is no GraphQL request, answered as a GraphQL error.

    A mutation sent with GET gets 405 and ``Allow: POST``, as the spec asks.
    """
    status_code, headers = refused.status_code, {}
    if request.method == "GET" and isinstance(refused.__cause__, InvalidOperationTypeError):
        status_code, headers = 405, {"allow": "POST"}
    body = {"errors": [{"message": refused.reason, "extensions": {"code": "BAD_USER_INPUT"}}]}
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status_code,
        headers=headers,
        media_type=response_media_type(request.headers.get("accept")),
    )
