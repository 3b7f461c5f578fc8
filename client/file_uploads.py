"""Sending a file's bytes where an upload ticket says: straight to storage.

The server never carries the bytes: createUpload answers with a signed URL and the
headers (PUT) or form fields (POST) that storage expects, and this sends them.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from client.exceptions import PlopClientError

# What a file whose type cannot be guessed from its name is announced as; the server
# names the types it takes when it refuses one.
UNKNOWN_TYPE = "application/octet-stream"


def guessed_type(path: Path) -> str:
    """The content type a file's name suggests (``photo.jpg`` -> ``image/jpeg``)."""
    return mimetypes.guess_type(path.name)[0] or UNKNOWN_TYPE


async def send_to_storage(ticket: Mapping[str, Any], body: bytes, timeout_seconds: float) -> None:
    """Sends ``body`` as the ticket says; PlopClientError if storage refuses it."""
    fields = {field["name"]: field["value"] for field in ticket["fields"]}
    async with httpx.AsyncClient(timeout=timeout_seconds) as storage:
        try:
            if ticket["method"] == "POST":
                answer = await storage.post(ticket["url"], data=fields, files={"file": body})
            else:
                answer = await storage.request(
                    ticket["method"], ticket["url"], content=body, headers=fields
                )
        except httpx.HTTPError as exc:
            raise PlopClientError(
                "UNAVAILABLE", f"cannot reach file storage: {exc}", retryable=True
            ) from exc
    if answer.status_code >= 300:
        raise PlopClientError(
            "BAD_USER_INPUT", f"file storage refused the upload ({answer.status_code})"
        )
