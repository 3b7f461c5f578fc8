"""``/files/<key>``: the embedded storage's uploads and downloads, served by Plop.

Only with ``PLOP_STORAGE_URL=file://...`` (``backends.disk_objects``); with S3 the
client talks to the storage server and this path answers 404. Each request is
allowed by its URL alone: an HMAC over what it may do and an expiry, signed when
createUpload made the ticket or a resolver the download URL. Downloads are served
as attachments unless they are images, never sniffed, and sandboxed, so that no
uploaded file runs as a page of this origin.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, JSONResponse, Response

from backends.disk_objects import FILES_PATH, DiskObjectStorage
from errors import BadUserInput, PlopError

router = APIRouter()


def _storage(request: Request) -> DiskObjectStorage | None:
    services = getattr(request.app.state, "services", None)
    storage = getattr(getattr(services, "uploads", None), "storage", None)
    return storage if isinstance(storage, DiskObjectStorage) else None


def _refusal(status: int, error: PlopError) -> Response:
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}}, status_code=status
    )


STATUS_OF = {"FORBIDDEN": 403, "BAD_USER_INPUT": 400, "NOT_FOUND": 404, "CONFLICT": 412}


@router.put(FILES_PATH + "/{kind}/{name}")
async def upload_file(request: Request, kind: str, name: str) -> Response:
    storage = _storage(request)
    if storage is None:
        return Response(status_code=404)
    key = f"{kind}/{name}"
    query = request.query_params
    content_type = request.headers.get("content-type", "")
    size = query.get("size", "")
    try:
        storage.check_signature(
            "PUT", key, query.get("expires", ""), query.get("sig", ""), content_type, size
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared != size:
            return _refusal(400, BadUserInput(f"Content-Length must be the announced {size} bytes"))
        await storage.store(key, content_type, int(size), request.stream())
    except PlopError as exc:
        return _refusal(STATUS_OF.get(exc.code, 400), exc)
    return Response(status_code=200)


@router.get(FILES_PATH + "/{kind}/{name}")
async def download_file(request: Request, kind: str, name: str) -> Response:
    storage = _storage(request)
    if storage is None:
        return Response(status_code=404)
    key = f"{kind}/{name}"
    query = request.query_params
    try:
        storage.check_signature("GET", key, query.get("expires", ""), query.get("sig", ""))
    except PlopError as exc:
        return _refusal(STATUS_OF.get(exc.code, 400), exc)
    found = storage.file_of(key)
    if found is None:
        return Response(status_code=404)
    path, stored = found
    inline = stored.content_type.startswith("image/")
    return FileResponse(
        path,
        media_type=stored.content_type,
        headers={
            "Content-Disposition": "inline" if inline else "attachment",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, max-age=300",
        },
    )


def mount_file_routes(app: FastAPI) -> None:
    app.include_router(router)
