"""The GraphQL types of files (contract v1.2): attachments and upload tickets."""

from __future__ import annotations

from datetime import datetime

import strawberry

from backends.object_storage import UploadGrant
from models import UploadDoc
from models.time import as_utc
from schema.context import Info


@strawberry.type(
    description=(
        "v1.2. A file stored in S3-compatible object storage (or on the embedded default's disk)."
    )
)
class Attachment:
    id: strawberry.ID
    filename: str
    content_type: str
    size: int = strawberry.field(description="Bytes.")
    url: str = strawberry.field(
        description="A short-lived download URL, handed only to members of the message's room."
    )
    width: int | None = strawberry.field(
        description="Pixels, for images whose size the server read; null otherwise."
    )
    height: int | None

    @classmethod
    async def of(cls, upload: UploadDoc, info: Info) -> Attachment:
        """The attachment with a download URL signed now (for a member: the caller's
        check)."""
        return cls(
            id=strawberry.ID(str(upload.id)),
            filename=upload.filename,
            content_type=upload.content_type,
            size=upload.size,
            url=await info.context.services.uploads.download_url(upload),
            width=upload.width,
            height=upload.height,
        )


@strawberry.type
class UploadField:
    name: str
    value: str


@strawberry.type(
    description=(
        "v1.2. Where the client sends a file's bytes itself (the server never relays them):\n"
        "method PUT with `fields` as headers, or POST with `fields` as form fields before the "
        "file."
    )
)
class UploadTicket:
    attachment_id: strawberry.ID
    method: str
    url: str
    fields: list[UploadField]
    expires_at: datetime

    @classmethod
    def of(cls, upload: UploadDoc, grant: UploadGrant) -> UploadTicket:
        return cls(
            attachment_id=strawberry.ID(str(upload.id)),
            method=grant.method,
            url=grant.url,
            fields=[UploadField(name=name, value=value) for name, value in grant.fields],
            expires_at=as_utc(grant.expires_at),
        )
