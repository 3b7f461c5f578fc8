"""The web pages Plop serves itself: the chat page at ``/`` and GraphiQL at ``/graphql``.

Every file a page loads comes from this server (``/web/...``): the pages and the
vendored browser packages under ``static/vendor/`` (scripts/vendor-web.sh fetched them
from npm, with their licenses), so the pages work on a machine with no internet.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
# Where the pages' own files and the vendored packages are served from.
STATIC_PREFIX = "/web"


@cache
def graphiql_html() -> str:
    """The GraphiQL page, read once: it has no per-request parts."""
    return (STATIC_DIR / "graphiql.html").read_text(encoding="utf-8")


def mount_web(app: FastAPI) -> None:
    """Serves the chat page at ``/`` and the pages' files under ``/web``."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="web")

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
