"""Uploads as a client makes them: createUpload, then the bytes straight to storage."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from backends.disk_objects import DiskObjectStorage
from backends.object_storage import ObjectStorage
from backends.s3_objects import S3ObjectStorage
from tests.support.chat import as_user
from tests.support.clients import Account
from tests.support.server import ServerProcess

ATTACHMENT_FIELDS = "id filename contentType size url width height"
CREATE_UPLOAD = """
mutation($r: ID!, $f: String!, $t: String!, $s: Int!) {
  createUpload(roomId: $r, filename: $f, contentType: $t, size: $s) {
    attachmentId method url fields { name value } expiresAt
  }
}
"""
SEND_FILES = f"""
mutation($r: ID!, $t: String!, $a: [ID!], $c: String) {{
  sendMessage(roomId: $r, text: $t, attachmentIds: $a, clientId: $c) {{
    id seq text attachments {{ {ATTACHMENT_FIELDS} }}
  }}
}}
"""
HISTORY_FILES = f"""
query($r: ID!) {{
  messages(roomId: $r, last: 20) {{
    edges {{ node {{ id seq deleted attachments {{ {ATTACHMENT_FIELDS} }} }} }}
  }}
}}
"""
DELETE_MESSAGE = """
mutation($m: ID!) { deleteMessage(messageId: $m) { deleted attachments { id } } }
"""
UPDATE_PROFILE = """
mutation($d: String, $a: ID) { updateProfile(displayName: $d, avatarUploadId: $a) {
  id displayName avatarUrl
} }
"""
ME_AVATAR = "query { me { avatarUrl } }"


def png(width: int, height: int, color: str = "red") -> bytes:
    """A real PNG of that size."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


async def ticket(
    server: ServerProcess,
    owner: Account,
    room_id: str,
    body: bytes,
    content_type: str = "image/png",
    filename: str = "photo.png",
) -> dict[str, Any]:
    """An upload ticket announcing exactly ``body``."""
    data = await as_user(
        server, owner, CREATE_UPLOAD, r=room_id, f=filename, t=content_type, s=len(body)
    )
    found: dict[str, Any] = data["createUpload"]
    return found


async def put(upload: dict[str, Any], body: bytes) -> httpx.Response:
    """Sends the bytes where the ticket says, as the ticket says (headers from fields)."""
    headers = {field["name"]: field["value"] for field in upload["fields"]}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.request(upload["method"], upload["url"], content=body, headers=headers)


async def uploaded(
    server: ServerProcess,
    owner: Account,
    room_id: str,
    body: bytes,
    content_type: str = "image/png",
    filename: str = "photo.png",
) -> str:
    """The id of an upload whose bytes reached storage."""
    upload = await ticket(server, owner, room_id, body, content_type, filename)
    sent = await put(upload, body)
    assert sent.status_code in (200, 204), (sent.status_code, sent.text)
    attachment_id: str = upload["attachmentId"]
    return attachment_id


async def download(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url)


def storage_for(storage_url: str, data_dir: Path | None) -> ObjectStorage:
    """A direct handle on the storage a server uses, to see what it holds."""
    if data_dir is not None:
        return DiskObjectStorage(data_dir / "files", "http://unused", "unused")
    return S3ObjectStorage(storage_url, 5.0)
