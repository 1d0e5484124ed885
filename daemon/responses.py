"""How the API answers: render once, cache, ETag and 304, gzip, and the render limit.

A handler names what its answer depends on (the buckets a query covers, a
title) and hands ``Responder.respond`` a function that makes the body. The
responder derives a weak ETag from those parts, the request's path and
parameters, and a nonce of this process; answers 304 when the client has that
ETag; serves the body from a small cache (bounded in entries and bytes, kept
gzip-compressed) when it has it; else runs the function in a worker thread,
at most ``limit`` at once (more get 503), and once however many requests ask
for the same ETag meanwhile.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

CACHE_ENTRIES = 32
CACHE_BYTES = 32 << 20
SVG = "image/svg+xml"
TEXT = "text/plain"
PPROF = "application/octet-stream"
JSON = "application/json"
METRICS_TTL = 1.0
"""Seconds one exposition is reused: a scrape storm renders it once (Prometheus scrapes
every 15 s or so; dashboards and alerts never see the difference)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Rendered:
    body: bytes
    gzipped: bytes
    """The body gzip-compressed; empty for bodies that are compressed already (pprof)."""
    content_type: str


def packed(body: bytes, content_type: str, level: int = 6) -> Rendered:
    """``body`` with its gzip form; ``level`` 1 for big bodies made often (seven times faster
    than 6 on the page's JSON, a third larger)."""
    return Rendered(body, gzip.compress(body, compresslevel=level, mtime=0), content_type)


class RenderLimiter:
    """At most ``limit`` merges/renders at once; the rest are refused with 503."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    async def run(self, work: Callable[[], Rendered]) -> Rendered:
        if self.active >= self.limit:
            raise web.HTTPServiceUnavailable(
                text="busy rendering other graphs; retry shortly\n", headers={"Retry-After": "1"}
            )
        self.active += 1
        try:
            return await asyncio.to_thread(work)
        finally:
            self.active -= 1


class ResponseCache:
    """Rendered bodies by ETag, bounded in entries and bytes; one body may take half the
    bytes (the page's JSON of a 50,000-stack range, about 10 MB with its gzip form, fits)."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.size = 0
        self.items: OrderedDict[str, Rendered] = OrderedDict()
        self.pending: dict[str, asyncio.Future[Rendered]] = {}

    def settle(self, etag: str, done: asyncio.Future[Rendered]) -> None:
        """A rendering ended: cache its result (if any) and forget it as pending."""
        self.pending.pop(etag, None)
        if not done.cancelled() and done.exception() is None:
            self.put(etag, done.result())

    def get(self, etag: str) -> Rendered | None:
        item = self.items.get(etag)
        if item is not None:
            self.items.move_to_end(etag)
        return item

    def put(self, etag: str, item: Rendered) -> None:
        cost = len(item.body) + len(item.gzipped)
        if cost > self.max_bytes // 2 or etag in self.items:
            return
        self.items[etag] = item
        self.size += cost
        while len(self.items) > self.entries or self.size > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.size -= len(old.body) + len(old.gzipped)


class Responder:
    """One per app: the limiter, the cache, and the nonce that keeps ETags to this process."""

    def __init__(self, limit: int) -> None:
        self.limiter = RenderLimiter(limit)
        self.cache = ResponseCache()
        self.nonce = f"{time.time_ns():x}"

    def etag(self, request: web.Request, parts: tuple[object, ...]) -> str:
        items = sorted(request.query.items())
        text = repr((self.nonce, request.path, items, parts))
        return f'W/"{zlib.crc32(text.encode("utf-8", "surrogateescape")):08x}"'

    async def respond(
        self, request: web.Request, parts: tuple[object, ...], work: Callable[[], Rendered]
    ) -> web.StreamResponse:
        """304 when the client has it, the cached body when we have it, else render once.

        Requests for an ETag whose rendering is under way wait for that rendering
        instead of starting another (so a poll storm after a new bucket renders once).
        """
        etag = self.etag(request, parts)
        if not_modified(request, etag):
            return unchanged(etag)
        item = self.cache.get(etag)
        if item is None:
            item = await asyncio.shield(self._rendering(etag, work))
        return send(request, etag, item)

    def respond_now(
        self, request: web.Request, parts: tuple[object, ...], work: Callable[[], Rendered]
    ) -> web.Response:
        """``respond`` for a body cheap enough to make on the event loop (bucket metadata):
        it takes no render slot, so a page's poll is never refused while graphs render."""
        etag = self.etag(request, parts)
        if not_modified(request, etag):
            return unchanged(etag)
        item = self.cache.get(etag)
        if item is None:
            item = work()
            self.cache.put(etag, item)
        return send(request, etag, item)

    def _rendering(self, etag: str, work: Callable[[], Rendered]) -> asyncio.Future[Rendered]:
        pending = self.cache.pending.get(etag)
        if pending is None:
            pending = asyncio.ensure_future(self.limiter.run(work))
            self.cache.pending[etag] = pending
            pending.add_done_callback(lambda done: self.cache.settle(etag, done))
        return pending


def unchanged(etag: str) -> web.Response:
    return web.Response(status=304, headers={"ETag": etag, "Vary": "Accept-Encoding"})


def not_modified(request: web.Request, etag: str) -> bool:
    wanted = request.headers.get("If-None-Match", "")
    return any(tag.strip() in (etag, "*") for tag in wanted.split(","))


def accepts_gzip(request: web.Request) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "").lower()


def svg_policy() -> str:
    """An SVG opened on its own runs its own script and nothing else, whatever its names."""
    from flamed.render.svg import script_hash

    return f"default-src 'none'; script-src '{script_hash()}'; style-src 'unsafe-inline'"


def send(request: web.Request, etag: str, item: Rendered) -> web.Response:
    headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if item.content_type == SVG:
        headers["Content-Security-Policy"] = svg_policy()
        headers["X-Content-Type-Options"] = "nosniff"
    if item.gzipped and accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=item.gzipped, content_type=item.content_type, headers=headers)
    return web.Response(body=item.body, content_type=item.content_type, headers=headers)


def metrics_handler(registry: CollectorRegistry, ttl: float = METRICS_TTL) -> Handler:
    """GET /metrics: the text (or OpenMetrics) exposition, gzip-compressed once per render.

    Like prometheus_client's ``make_aiohttp_handler`` (same encoder choice by
    Accept header), plus a short reuse of the rendered and compressed body.
    """
    from prometheus_client.exposition import choose_encoder

    rendered: dict[str, tuple[float, Rendered]] = {}

    async def handler(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        now = time.monotonic()
        hit = rendered.get(content_type)
        if hit is None or now - hit[0] > ttl:
            hit = now, packed(encoder(registry), content_type)
            rendered[content_type] = hit
        item = hit[1]
        headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if accepts_gzip(request):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=item.gzipped, headers=headers)
        return web.Response(body=item.body, headers=headers)

    return handler
