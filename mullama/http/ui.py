"""The web dashboard's files: ``GET /ui/...`` serves ``mullama/ui/static`` (docs/dashboard.md).

The files are static and hold no secrets, so they are served without an API key; everything the page
shows comes from the public API, to which the page sends the key the user gives it. A browser that
opens ``/`` (it asks for ``text/html``) is sent to ``/ui/``; Ollama's clients, which probe ``/`` for
"Ollama is running", are not. Every file goes out with a Content-Security-Policy that allows only this
origin's scripts and styles (no inline script), and no framing.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from mullama.ui import STATIC

PREFIX = "/ui/"

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate (ETag): an upgraded server never runs an old page
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png",
          ".svg": "image/svg+xml", ".json": "application/json"}


def is_ui_path(path: str) -> bool:
    return path == "/ui" or path.startswith(PREFIX)


def wants_dashboard(request: web.Request) -> bool:
    """A browser opening ``/``: a GET that asks for HTML (Ollama's clients probe ``/`` without doing so)."""
    return request.method == "GET" and request.path == "/" and "text/html" in request.headers.get("Accept", "")


def static_file(relative: str, root: Path = STATIC) -> Path:
    """The file under ``root`` that ``relative`` names; a 404 for anything else (``..``, links out)."""
    base = root.resolve()
    try:
        path = (base / relative).resolve()
    except (OSError, ValueError):
        raise web.HTTPNotFound(text=f"no dashboard file {relative[:100]!r}") from None
    if not path.is_relative_to(base) or not path.is_file():
        raise web.HTTPNotFound(text=f"no dashboard file {relative[:100]!r}")
    return path


async def index_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX)


async def ui_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info.get("path") or "index.html"
    path = static_file(relative)
    content_type = _TYPES.get(path.suffix) or "text/plain"  # LICENSE, VERSION
    return web.FileResponse(path, headers={**SECURITY_HEADERS, "Content-Type": content_type})


@web.middleware
async def browser_root(request: web.Request, handler):
    """``GET /`` from a browser goes to the dashboard; before the API-key check: the page asks for one."""
    if wants_dashboard(request):
        raise web.HTTPFound(PREFIX)
    return await handler(request)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/ui", index_redirect)
    r.add_get("/ui/", ui_file)
    r.add_get("/ui/{path:.+}", ui_file)
