"""Object storage for uploaded files, chosen by ``PLOP_STORAGE_URL``.

The server never carries a file's bytes through GraphQL: it hands the client a
signed, short-lived way to send them straight to storage (an ``UploadGrant``), asks
storage what arrived (``head``), and signs short-lived download URLs. Two backends
keep that one shape: ``s3://`` (any S3-compatible server, ``backends.s3_objects``)
and ``file://`` (the embedded default, files on local disk served by Plop itself at
HMAC-signed URLs, ``backends.disk_objects``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

from errors import ConfigError


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What storage holds under a key, as its HEAD tells."""

    size: int
    content_type: str


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """How a client sends one file: ``method`` to ``url`` with ``fields`` as headers."""

    method: str
    url: str
    fields: tuple[tuple[str, str], ...]
    expires_at: datetime


class ObjectStorage(Protocol):
    """The whole contract of a storage backend."""

    async def start(self) -> None:
        """Connects (and creates the bucket or directory if it is missing)."""

    async def close(self) -> None: ...

    async def grant_upload(
        self, key: str, content_type: str, size: int, expires_seconds: float
    ) -> UploadGrant:
        """A signed upload of exactly ``size`` bytes of ``content_type`` to ``key``."""

    async def download_url(self, key: str, expires_seconds: float) -> str:
        """A signed GET of the object, good for ``expires_seconds``."""

    async def head(self, key: str) -> StoredObject | None:
        """What is stored under the key; None if nothing is."""

    async def read_start(self, key: str, size: int) -> bytes:
        """The object's first ``size`` bytes (or all of it if shorter)."""

    async def delete(self, key: str) -> None:
        """Removes the object; a missing one is not an error."""


def storage_origin(url: str) -> str | None:
    """The origin browsers fetch and send files at; None when Plop serves them itself."""
    scheme = urlsplit(url).scheme
    if scheme not in ("s3", "s3+https"):
        return None
    from backends.s3_objects import client_endpoint

    parts = urlsplit(client_endpoint(url))
    return f"{parts.scheme}://{parts.netloc}"


def storage_from_url(
    url: str, data_dir: str, public_url: str, signing_secret: str, timeout_seconds: float
) -> ObjectStorage:
    """The backend ``url`` names: ``file://`` or ``s3://KEY:SECRET@host:port/bucket``."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        from backends.disk_objects import DiskObjectStorage, disk_root

        return DiskObjectStorage(disk_root(url, data_dir), public_url, signing_secret)
    if scheme in ("s3", "s3+https"):
        from backends.s3_objects import S3ObjectStorage

        return S3ObjectStorage(url, timeout_seconds)
    raise ConfigError(f"PLOP_STORAGE_URL has an unsupported scheme: {url!r} (file:// or s3://)")
