"""The web pages Plop serves itself: the chat page at ``/`` and GraphiQL at ``/graphql``.

Every file a page loads comes from this server: the pages' scripts and styles and the
vendored browser packages under ``static/vendor/`` (scripts/vendor-web.sh fetched them
from npm, with their licenses) are served under ``/web``, so the pages work on a
machine with no internet. Their Content-Security-Policy lets the browser load nothing
from anywhere else either.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

PAGES_DIR = Path(__file__).parent / "pages"
STATIC_DIR = Path(__file__).parent / "static"
# Where the pages' own files and the vendored packages are served from.
STATIC_PREFIX = "/web"
# This server only. Styles may be inline (GraphiQL's editors set them at run time);
# fonts and icons inside GraphiQL's stylesheet are data: URLs.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)


@cache
def _page(name: str) -> str:
    """A page's HTML, read once: the pages have no per-request parts."""
    return (PAGES_DIR / name).read_text(encoding="utf-8")


def page_response(name: str, file_origin: str | None = None) -> HTMLResponse:
    """One of the pages, with the policy that keeps the browser on this server (and,
    for the chat page, the file storage's origin: its photos and uploads)."""
    policy = CONTENT_SECURITY_POLICY
    if file_origin:
        policy = policy.replace("img-src 'self'", f"img-src 'self' {file_origin}")
        policy = policy.replace("connect-src 'self'", f"connect-src 'self' {file_origin}")
    return HTMLResponse(
        _page(name),
        headers={
            "Content-Security-Policy": policy,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


def graphiql_response() -> HTMLResponse:
    """The GraphiQL page."""
    return page_response("graphiql.html")


def mount_web(app: FastAPI, file_origin: str | None = None) -> None:
    """Serves the chat page at ``/`` and the pages' files under ``/web``; ``file_origin``
    is the object storage's, when files are not served by this server."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="web")

    @app.get("/", include_in_schema=False)
    async def chat_page() -> HTMLResponse:
        return page_response("chat.html", file_origin)
