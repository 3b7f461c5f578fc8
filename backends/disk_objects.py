"""The ``file://`` storage backend: the embedded default, files on local disk.

Plop serves these files itself under ``/files/<key>``, at URLs that carry their
expiry and an HMAC-SHA256 of what they allow (method, key, expiry and, for an
upload, the content type and exact size), so the same ticket shape works with no
storage service: a PUT with the ticket's headers stores the file, a GET reads it
back, and a changed byte of the URL or a passed expiry is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from backends.object_storage import StoredObject, UploadGrant
from errors import BadUserInput, Conflict, Forbidden
from models.time import utc_now

# Where Plop serves the files (see transport/file_routes.py).
FILES_PATH = "/files"
# Keys are Plop's own (uploads/<id>): nothing else may name a path on disk.
_KEY = re.compile(r"^[a-z]+/[0-9a-f]{24}$")
_META_SUFFIX = ".meta.json"


def disk_root(url: str, data_dir: str) -> Path:
    """``file://`` alone is ``<data_dir>/files``; ``file:///abs/dir`` names the directory."""
    path = urlsplit(url).path
    return Path(path) if path not in ("", "/") else Path(data_dir) / "files"


def _checked_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise BadUserInput("no such file")
    return key


class DiskObjectStorage:
    """Files under one directory, each with its content type in a sidecar file."""

    def __init__(self, root: Path, public_url: str, secret: str) -> None:
        self.root = root
        self._public_url = public_url.rstrip("/")
        self._secret = secret.encode()

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ signing

    def _signature(self, *parts: str) -> str:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    def _url(self, key: str, query: dict[str, str]) -> str:
        return f"{self._public_url}{FILES_PATH}/{key}?{urlencode(query)}"

    async def grant_upload(
        self, key: str, content_type: str, size: int, expires_seconds: float
    ) -> UploadGrant:
        expires = str(int(time.time() + expires_seconds))
        signature = self._signature("PUT", _checked_key(key), expires, content_type, str(size))
        query = {"expires": expires, "size": str(size), "sig": signature}
        return UploadGrant(
            method="PUT",
            url=self._url(key, query),
            fields=(("Content-Type", content_type), ("If-None-Match", "*")),
            expires_at=utc_now() + timedelta(seconds=int(expires_seconds)),
        )

    async def download_url(self, key: str, expires_seconds: float) -> str:
        expires = str(int(time.time() + expires_seconds))
        signature = self._signature("GET", _checked_key(key), expires)
        return self._url(key, {"expires": expires, "sig": signature})

    def check_signature(
        self, method: str, key: str, expires: str, signature: str, *signed: str
    ) -> None:
        """FORBIDDEN unless the URL was signed here for this, and has not expired."""
        _checked_key(key)
        expected = self._signature(method, key, expires, *signed)
        if not hmac.compare_digest(expected, signature):
            raise Forbidden("this link is not valid")
        if not expires.isdigit() or int(expires) < time.time():
            raise Forbidden("this link has expired")

    # -------------------------------------------------------------------- files

    def _path(self, key: str) -> Path:
        return self.root / _checked_key(key)

    async def store(
        self, key: str, content_type: str, size: int, chunks: AsyncIterator[bytes]
    ) -> None:
        """Writes exactly ``size`` bytes (BAD_USER_INPUT otherwise); the file appears
        whole or not at all, and once: a second upload to the key is a Conflict, so the
        bytes cannot change after they were checked."""
        path = self._path(key)
        if await asyncio.to_thread(path.exists):
            raise Conflict("this file was uploaded already")
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        received = 0
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            async for chunk in chunks:
                received += len(chunk)
                if received > size:
                    raise BadUserInput(f"the body is longer than the announced {size} bytes")
                await asyncio.to_thread(handle.write, chunk)
            if received != size:
                raise BadUserInput(f"the body is {received} bytes, not the announced {size}")
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise
        handle.close()
        meta = json.dumps({"content_type": content_type, "size": size})
        await asyncio.to_thread(path.with_name(path.name + _META_SUFFIX).write_text, meta)
        try:
            # A link is made only where no file is: of two uploads at once, one wins.
            await asyncio.to_thread(os.link, partial, path)
        except FileExistsError as exc:
            raise Conflict("this file was uploaded already") from exc
        finally:
            await asyncio.to_thread(partial.unlink, True)

    def file_of(self, key: str) -> tuple[Path, StoredObject] | None:
        """The file and what it holds, for serving it; None if missing."""
        path = self._path(key)
        try:
            meta = json.loads(path.with_name(path.name + _META_SUFFIX).read_text())
            size = path.stat().st_size
        except (OSError, ValueError):
            return None
        return path, StoredObject(size=size, content_type=str(meta.get("content_type", "")))

    async def head(self, key: str) -> StoredObject | None:
        found = await asyncio.to_thread(self.file_of, key)
        return found[1] if found else None

    async def read_start(self, key: str, size: int) -> bytes:
        def read() -> bytes:
            with self._path(key).open("rb") as handle:
                return handle.read(size)

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            path.unlink(missing_ok=True)
            path.with_name(path.name + _META_SUFFIX).unlink(missing_ok=True)

        await asyncio.to_thread(remove)
