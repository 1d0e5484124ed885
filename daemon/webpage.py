"""The daemon's web page: ``GET /`` and its script and style sheet.

The page is static: plain HTML, CSS and hand-written JavaScript shipped as
package data in ``daemon/assets/`` (nothing fetched from the internet). The
script is written as a few files, one concern each (``SCRIPT_PARTS``: formats,
the profile model, the canvas graph, the timeline, the top table, the page),
served as one ``static/page.js``, joined in that order: no build step but
that. It holds no profile data; it reads ``api/v1/targets``,
``api/v1/timeline`` and ``api/v1/profile`` (and links the other formats)
with the bearer token the user gives it, so the page and its assets can be
served without a token (``PAGE_PATHS``).

Every URL in the page is relative (``static/page.js``, ``api/v1/...``), so the
page works unchanged behind a reverse proxy that maps a path prefix such as
``/flamed/`` onto the daemon's root. Each response carries a Content-Security-
Policy with a fresh nonce: only the page's own scripts run. They draw frame
names on canvases and put them in the page as text only, so a name is never
markup.
"""

from __future__ import annotations

import gzip
import secrets
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from aiohttp import web

STATIC = "/static/"
CONTENT_TYPES = {"page.js": "text/javascript", "page.css": "text/css"}
SCRIPT_PARTS = ("format.js", "profile.js", "graph.js", "timeline.js", "table.js", "main.js")
"""What ``static/page.js`` is made of, in order (each part adds to ``window.flamedViewer``)."""
PAGE_PATHS = frozenset({"/", *(STATIC + name for name in CONTENT_TYPES)})
"""Paths that need no bearer token: the page holds no data and asks for the token itself."""

NONCE_MARK = "{{nonce}}"
VERSION_MARK = "{{version}}"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def read_asset(name: str) -> bytes:
    """An asset's bytes; ``page.js`` is ``SCRIPT_PARTS`` joined."""
    if name == "page.js":
        return b"\n".join(read_asset(part) for part in SCRIPT_PARTS)
    return resources.files("flamed.daemon").joinpath("assets", name).read_bytes()


def etag_of(body: bytes) -> str:
    return f'"{zlib.crc32(body):08x}"'


@cache
def asset(name: str) -> Asset:
    """One of the page's assets, read once from the package."""
    body = read_asset(name)
    return Asset(body, gzip.compress(body, 9, mtime=0), CONTENT_TYPES[name], etag_of(body))


@cache
def page_template() -> str:
    """index.html with the assets' version filled in (so a new release is never stale)."""
    version = "".join(asset(name).etag.strip('"') for name in sorted(CONTENT_TYPES))
    return read_asset("index.html").decode("utf-8").replace(VERSION_MARK, version)


def security_policy(nonce: str) -> str:
    """Only our scripts; API calls to us only."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
        )
    )


async def index(request: web.Request) -> web.Response:
    """The page, with a fresh CSP nonce."""
    nonce = secrets.token_urlsafe(18)
    headers = {
        "Content-Security-Policy": security_policy(nonce),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    text = page_template().replace(NONCE_MARK, nonce)
    return web.Response(text=text, content_type="text/html", headers=headers)


async def static_asset(request: web.Request) -> web.Response:
    """``static/page.js`` and ``static/page.css`` (gzip-compressed when the browser takes it);
    304 when the browser has them."""
    item = asset(request.path.removeprefix(STATIC))
    headers = {
        "ETag": item.etag,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    wanted = request.headers.get("If-None-Match", "")
    if item.etag in (tag.strip() for tag in wanted.split(",")):
        return web.Response(status=304, headers=headers)
    body = item.body
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        body = item.gzipped
    return web.Response(body=body, content_type=item.content_type, charset="utf-8", headers=headers)


def add_page_routes(app: web.Application) -> None:
    """Register ``/`` and the page's assets on ``app`` (the daemon's application)."""
    app.router.add_get("/", index)
    for name in CONTENT_TYPES:
        app.router.add_get(STATIC + name, static_asset)
