"""The ``s3://`` storage backend: any S3-compatible server, through aiobotocore.

``s3://KEY:SECRET@host:port/bucket`` speaks plain HTTP to the server (``s3+https://``
speaks HTTPS). ``?public=http://files.example.com:7070`` names the address clients
reach the server at when it differs from Plop's (a container network): the URLs
handed to clients are signed for that host, since SigV4 signs the host.

A bucket with no CORS rules is given one at start-up that lets a page on any origin
PUT, GET and HEAD with the presigned URLs (the URL is the credential: it names one
object, one method and an expiry), so the chat page and other web apps upload and
show files straight from storage; a bucket that has rules keeps them untouched.

Uploads are presigned PUTs (SigV4) that sign the content type, the length and
``If-None-Match: *`` (write once), so storage itself refuses a body that is not what
createUpload announced, or a second one; downloads are presigned GETs. Path-style
addressing, because a self-hosted server has no wildcard DNS for virtual-host
buckets; checksums only when an operation requires them, because botocore >= 1.36
otherwise sends CRC32 headers that not every S3-compatible server takes.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from backends.object_storage import StoredObject, UploadGrant
from errors import BackendUnreachable, ConfigError, Unavailable, describe
from models.time import utc_now

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CORSRuleTypeDef

# SigV4 needs a region; self-hosted servers take any, and this is botocore's default.
REGION = "us-east-1"
_MISSING = ("404", "NoSuchKey", "NotFound")
# What a page needs to send and show files with presigned URLs, from any origin.
BROWSER_CORS_RULE: CORSRuleTypeDef = {
    "AllowedOrigins": ["*"],
    "AllowedMethods": ["GET", "HEAD", "PUT"],
    "AllowedHeaders": ["*"],
    "ExposeHeaders": ["ETag"],
    "MaxAgeSeconds": 3600,
}


def _public_endpoint(url: str) -> str | None:
    """The ``public`` query parameter: where clients reach the server, if elsewhere."""
    found = parse_qs(urlsplit(url).query).get("public")
    if not found:
        return None
    public = urlsplit(found[0])
    if public.scheme not in ("http", "https") or not public.hostname:
        raise ConfigError("PLOP_STORAGE_URL: public= must be an http(s):// address")
    return found[0].rstrip("/")


def client_endpoint(url: str) -> str:
    """Where clients reach the server: ``public=``, else the URL's own host."""
    return _public_endpoint(url) or _parts(url)[0]


def _parts(url: str) -> tuple[str, str, str, str]:
    """(endpoint, access key, secret key, bucket) of an ``s3://`` URL."""
    parts = urlsplit(url)
    bucket = parts.path.strip("/")
    if not (parts.hostname and parts.username and parts.password and bucket):
        raise ConfigError(
            "PLOP_STORAGE_URL must name keys, server and bucket: s3://KEY:SECRET@host:port/bucket"
        )
    scheme = "https" if parts.scheme == "s3+https" else "http"
    port = f":{parts.port}" if parts.port else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}{port}", unquote(parts.username), unquote(parts.password), bucket


class S3ObjectStorage:
    """Objects in one bucket of an S3-compatible server."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._url = url
        self._endpoint, self._access_key, self._secret_key, self.bucket = _parts(url)
        self._timeout = timeout_seconds
        self._public_endpoint = _public_endpoint(url)
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None
        # Signs the URLs clients use; the same client unless they reach storage elsewhere.
        self._signer: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("the storage client is not started")
        return self._client

    @property
    def signer(self) -> S3Client:
        return self._signer or self.client

    def _new_client(self, endpoint: str, config: AioConfig) -> Any:
        return get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            config=config,
        )

    async def start(self) -> None:
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=self._timeout,
            read_timeout=self._timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        self._client = await self._stack.enter_async_context(
            self._new_client(self._endpoint, config)
        )
        if self._public_endpoint is not None:
            self._signer = await self._stack.enter_async_context(
                self._new_client(self._public_endpoint, config)
            )
        try:
            await asyncio.wait_for(self._ensure_bucket(), self._timeout * 2)
            await asyncio.wait_for(self._ensure_browser_cors(), self._timeout * 2)
        except (BotoCoreError, ClientError, TimeoutError, OSError) as exc:
            await self.close()
            raise BackendUnreachable("object storage", self._url, describe(exc)) from exc
        except BaseException:
            await self.close()
            raise

    async def _ensure_bucket(self) -> None:
        try:
            await self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise
        try:
            await self.client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # Another instance starting at the same time made it first.
            if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def _ensure_browser_cors(self) -> None:
        """Gives the bucket ``BROWSER_CORS_RULE`` if it has no CORS rules at all."""
        try:
            await self.client.get_bucket_cors(Bucket=self.bucket)
            return  # the operator's own rules stand
        except ClientError as exc:
            if _code(exc) != "NoSuchCORSConfiguration":
                raise
        await self.client.put_bucket_cors(
            Bucket=self.bucket, CORSConfiguration={"CORSRules": [BROWSER_CORS_RULE]}
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = self._signer = None

    async def grant_upload(
        self, key: str, content_type: str, size: int, expires_seconds: float
    ) -> UploadGrant:
        url = await self.signer.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size,
                # Write once: a second PUT with the ticket cannot swap the bytes after
                # they were checked (412 PreconditionFailed).
                "IfNoneMatch": "*",
            },
            ExpiresIn=int(expires_seconds),
        )
        return UploadGrant(
            method="PUT",
            url=url,
            fields=(("Content-Type", content_type), ("If-None-Match", "*")),
            expires_at=utc_now() + timedelta(seconds=int(expires_seconds)),
        )

    async def download_url(self, key: str, expires_seconds: float) -> str:
        return await self.signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=int(expires_seconds),
        )

    async def head(self, key: str) -> StoredObject | None:
        try:
            found = await self._call(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise Unavailable("file storage refused a request; try again later") from exc
        return StoredObject(
            size=int(found["ContentLength"]), content_type=str(found.get("ContentType", ""))
        )

    async def read_start(self, key: str, size: int) -> bytes:
        try:
            found = await self._call(
                self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{size - 1}")
            )
            async with found["Body"] as body:
                data: bytes = await asyncio.wait_for(body.read(), self._timeout)
            return data
        except ClientError as exc:
            raise Unavailable("file storage refused a request; try again later") from exc

    async def delete(self, key: str) -> None:
        try:
            await self._call(self.client.delete_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise Unavailable("file storage refused a request; try again later") from exc

    async def _call(self, call: Any) -> Any:
        """One request, bounded in time; a network failure is UNAVAILABLE."""
        try:
            return await asyncio.wait_for(call, self._timeout * 2)
        except (BotoCoreError, TimeoutError, OSError) as exc:
            raise Unavailable("file storage is unreachable; try again later") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
