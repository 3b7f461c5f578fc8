"""The ``s3://`` backend lets pages use its presigned URLs from any origin, on the
real S3-compatible server (versitygw): a bucket without CORS rules gets one at
start-up, a bucket with the operator's own keeps them. The page's side of it, a photo
sent and shown from storage, is tests/test_browser_conversation.py."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import httpx

from backends.s3_objects import S3ObjectStorage
from tests.support.services import RealServices

if TYPE_CHECKING:
    from types_aiobotocore_s3.type_defs import CORSRuleTypeDef


def bucket_url(real_services: RealServices, bucket: str) -> str:
    base, _, _ = real_services.storage_url.rpartition("/")
    return f"{base}/{bucket}"


async def test_a_new_bucket_answers_a_pages_preflight_for_an_upload(
    real_services: RealServices,
) -> None:
    storage = S3ObjectStorage(bucket_url(real_services, f"cors-{secrets.token_hex(4)}"), 5.0)
    await storage.start()
    try:
        grant = await storage.grant_upload("some/key", "image/png", 10, 60.0)
        async with httpx.AsyncClient() as client:
            answer = await client.options(
                grant.url,
                headers={
                    "Origin": "http://chat.example.com",
                    "Access-Control-Request-Method": "PUT",
                    "Access-Control-Request-Headers": "content-type,if-none-match",
                },
            )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] in ("*", "http://chat.example.com")
        assert "PUT" in answer.headers["access-control-allow-methods"]
    finally:
        await storage.close()


async def test_a_bucket_with_its_own_cors_rules_keeps_them(real_services: RealServices) -> None:
    url = bucket_url(real_services, f"cors-{secrets.token_hex(4)}")
    own: CORSRuleTypeDef = {
        "AllowedOrigins": ["https://only.example.com"],
        "AllowedMethods": ["GET"],
        "AllowedHeaders": ["authorization"],
    }
    first = S3ObjectStorage(url, 5.0)
    await first.start()
    try:
        await first.client.put_bucket_cors(
            Bucket=first.bucket, CORSConfiguration={"CORSRules": [own]}
        )
    finally:
        await first.close()
    again = S3ObjectStorage(url, 5.0)
    await again.start()
    try:
        rules = (await again.client.get_bucket_cors(Bucket=again.bucket))["CORSRules"]
    finally:
        await again.close()
    assert [rule["AllowedOrigins"] for rule in rules] == [own["AllowedOrigins"]]
