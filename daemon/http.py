"""The HTTP API (a contract): aiohttp app factory, handlers, auth, caching, metrics.

``create_app(config, ...)`` builds the application; its state lives in typed
``web.AppKey``s and the long-running parts (sessions, disk writer, config and
inbox watchers, systemd watchdog) are ``cleanup_ctx`` contexts that stop
cleanly. Input errors are 400s with a one-line reason, unknown targets 404s.
Merging and rendering run in worker threads, at most ``max_renders`` at once
(more get 503), so /healthz and /metrics keep answering. Responses carry weak
ETags derived from the buckets they cover, are kept gzip-compressed in a small
cache, and a poll that changes nothing is answered 304 without any work.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import json
import logging
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from flamed.collapse.errors import FlamedError, UsageError
from flamed.collapse.folded import Folded
from flamed.collector.base import TargetSpec
from flamed.daemon.config import Config, format_duration, parse_duration
from flamed.daemon.metrics import Metrics
from flamed.daemon.notify import Notifier
from flamed.daemon.service import Service, SessionFactory
from flamed.daemon.store import Selection, Window
from flamed.daemon.webpage import PAGE_PATHS

if TYPE_CHECKING:
    from flamed.render.options import RenderOptions

log = logging.getLogger("flamed.daemon.http")

SERVICE = web.AppKey("service", Service)
METRICS = web.AppKey("metrics", Metrics)
NOTIFIER = web.AppKey("notifier", Notifier)
NONCE = web.AppKey("nonce", str)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Never need the bearer token (nor do the web page's paths, which hold no data)."""
DEFAULT_API_WINDOW = 300.0
DEFAULT_QUICK_WINDOW = 60.0
CACHE_ENTRIES = 32
CACHE_BYTES = 32 << 20
SVG = "image/svg+xml"
TEXT = "text/plain"
PPROF = "application/octet-stream"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


@dataclass(frozen=True)
class Rendered:
    body: bytes
    gzipped: bytes
    """The body gzip-compressed; empty for bodies that are compressed already (pprof)."""
    content_type: str


class ResponseCache:
    """Rendered bodies by ETag, bounded in entries and bytes."""

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
        if cost > self.max_bytes // 4 or etag in self.items:
            return
        self.items[etag] = item
        self.size += cost
        while len(self.items) > self.entries or self.size > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.size -= len(old.body) + len(old.gzipped)


LIMITER = web.AppKey("limiter", RenderLimiter)
RESPONSES = web.AppKey("responses", ResponseCache)


# -- the renderer, in one place ------------------------------------------------------------


def render_flamegraph(folded: Folded, options: RenderOptions) -> str:
    """Folded stacks to an SVG flame graph (the one call into flamed.render)."""
    from flamed.render import render_flamegraph as render

    return render(folded, options)


def render_diff(before: Folded, after: Folded, options: RenderOptions) -> str:
    """Two profiles to a differential flame graph (the one call into flamed.render)."""
    from flamed.render import render_diff_folded

    return render_diff_folded(before, after, options)


def render_options(query: Mapping[str, str], title: str, subtitle: str) -> RenderOptions:
    from flamed.render.options import RenderOptions, options_from_query

    return options_from_query(query, RenderOptions(title=title, subtitle=subtitle))


# -- query parameters ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    label: str
    """For titles: ``last 5m`` for relative ranges, the absolute times otherwise."""


def parse_time(name: str, text: str, now: float) -> float:
    """``1732530000``, ``1732530000.5``, ``now``, ``now-15m`` -> unix seconds."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("now-"):
        value = now - parse_duration_param(name, text[4:])
    else:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name}: {text!r} is not unix seconds or now-DURATION") from None
    if not 0 <= value < 1e11:  # now-DURATION too: before 1970 no title can print it (a 500)
        raise UsageError(f"{name}: {text!r} is out of range")
    return value


def parse_duration_param(name: str, text: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as err:
        raise UsageError(f"{name}: {err}") from None
    if value <= 0:
        raise UsageError(f"{name}: must be more than zero")
    if value >= 1e11:  # also inf, from a long run of digits: the title would read "infs"
        raise UsageError(f"{name}: {text!r} is out of range")
    return value


def parse_range(
    query: Mapping[str, str], now: float, default_window: float, prefix: str = ""
) -> TimeRange:
    """``window`` (ending ``until`` or now) or ``from``/``until``."""
    window_text = query.get(prefix + "window")
    start_text = query.get(prefix + "from")
    until_text = query.get(prefix + "until")
    end = parse_time(prefix + "until", until_text, now) if until_text else now
    if window_text is not None and start_text is not None:
        raise UsageError(f"give {prefix}window or {prefix}from, not both")
    if start_text is not None:
        start = parse_time(prefix + "from", start_text, now)
        label = f"{format_time(start)} to {format_time(end)}"
    else:
        window = parse_duration_param(prefix + "window", window_text or "") if window_text else None
        width = window if window is not None else default_window
        start = end - width
        label = f"last {format_duration(width)}" if not until_text else f"{format_duration(width)}"
        if until_text:
            label += f" to {format_time(end)}"
    if start >= end:
        raise UsageError(f"{prefix}from must be before {prefix}until")
    return TimeRange(start, end, label)


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pick_window(request: web.Request, default_first: bool) -> tuple[str, Window]:
    service = request.app[SERVICE]
    name = request.query.get("target")
    if name is None:
        if not default_first:
            raise UsageError("target: missing (see /api/v1/targets)")
        if not service.config.targets:
            raise web.HTTPNotFound(text="no targets configured\n")
        name = service.config.targets[0].name
    window = service.windows.get(name)
    if window is None:
        raise web.HTTPNotFound(text=f"unknown target {name!r} (see /api/v1/targets)\n")
    return name, window


# -- responses -----------------------------------------------------------------------------


def make_etag(request: web.Request, *parts: object) -> str:
    items = sorted(request.query.items())
    text = repr((request.app[NONCE], request.path, items, parts))
    return f'W/"{zlib.crc32(text.encode("utf-8", "surrogateescape")):08x}"'


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


def packed(body: bytes, content_type: str) -> Rendered:
    return Rendered(body, gzip.compress(body, compresslevel=6, mtime=0), content_type)


async def cached_response(
    request: web.Request, etag: str, work: Callable[[], Rendered]
) -> web.StreamResponse:
    """304 when the client has it, the cached body when we have it, else render once.

    Requests for an ETag whose rendering is under way wait for that rendering
    instead of starting another (so a poll storm after a new bucket renders once).
    """
    if not_modified(request, etag):
        return web.Response(status=304, headers={"ETag": etag, "Vary": "Accept-Encoding"})
    cache = request.app[RESPONSES]
    item = cache.get(etag)
    if item is None:
        pending = cache.pending.get(etag)
        if pending is None:
            pending = asyncio.ensure_future(request.app[LIMITER].run(work))
            cache.pending[etag] = pending
            pending.add_done_callback(lambda done: cache.settle(etag, done))
        item = await asyncio.shield(pending)
    return send(request, etag, item)


def merged(window: Window, selection: Selection) -> Callable[[], Folded]:
    """A thread-safe thunk that returns the merged selection, using the window's cache."""
    hit = window.cached(selection)

    def work() -> Folded:
        return hit if hit is not None else window.merge(selection)

    return work


def remember(
    window: Window, selection: Selection, folded: Folded, loop: asyncio.AbstractEventLoop
) -> None:
    loop.call_soon_threadsafe(window.remember, selection, folded)


# -- handlers ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ok, reason = request.app[SERVICE].ready()
    return web.Response(status=200 if ok else 503, text=reason + "\n")


async def targets(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = [service.describe(name) for name in service.targets]
    return web.json_response(body, dumps=lambda obj: json.dumps(obj, indent=1))


async def folded_text(
    request: web.Request, default_first: bool, default: float
) -> web.StreamResponse:
    name, window = pick_window(request, default_first)
    service = request.app[SERVICE]
    span = parse_range(request.query, service.clock(), default)
    selection = window.select(span.start, span.end)
    etag = make_etag(request, name, selection.key)
    thunk, loop = merged(window, selection), asyncio.get_running_loop()

    def work() -> Rendered:
        folded = thunk()
        remember(window, selection, folded, loop)
        return packed(folded.to_bytes(), TEXT)

    return await cached_response(request, etag, work)


async def api_folded(request: web.Request) -> web.StreamResponse:
    return await folded_text(request, False, DEFAULT_API_WINDOW)


async def quick_folded(request: web.Request) -> web.StreamResponse:
    return await folded_text(request, True, DEFAULT_QUICK_WINDOW)


async def flamegraph(
    request: web.Request, default_first: bool, default: float
) -> web.StreamResponse:
    name, window = pick_window(request, default_first)
    service = request.app[SERVICE]
    span = parse_range(request.query, service.clock(), default)
    selection = window.select(span.start, span.end)
    options = render_options(request.query, f"{name}: {span.label}", selection_note(selection))
    etag = make_etag(request, name, selection.key, span.label)  # the title names the range
    thunk, loop, metrics = merged(window, selection), asyncio.get_running_loop(), service.metrics

    def work() -> Rendered:
        folded = thunk()
        remember(window, selection, folded, loop)
        with metrics.render_seconds.time():
            svg = render_flamegraph(folded, options)
        return packed(svg.encode("utf-8", "surrogateescape"), SVG)

    return await cached_response(request, etag, work)


async def api_flamegraph(request: web.Request) -> web.StreamResponse:
    return await flamegraph(request, False, DEFAULT_API_WINDOW)


async def quick_flamegraph(request: web.Request) -> web.StreamResponse:
    return await flamegraph(request, True, DEFAULT_QUICK_WINDOW)


async def api_diff(request: web.Request) -> web.StreamResponse:
    name, window = pick_window(request, False)
    service = request.app[SERVICE]
    before, after = diff_ranges(request.query, service.clock())
    sel_a = window.select(before.start, before.end)
    sel_b = window.select(after.start, after.end)
    title = f"{name}: {after.label} against {before.label}"
    options = render_options(request.query, title, selection_note(sel_b))
    etag = make_etag(request, name, sel_a.key, sel_b.key, title)
    metrics = service.metrics

    def work() -> Rendered:
        a, b = window.merge(sel_a), window.merge(sel_b)
        with metrics.render_seconds.time():
            svg = render_diff(a, b, options)
        return packed(svg.encode("utf-8", "surrogateescape"), SVG)

    return await cached_response(request, etag, work)


async def api_pprof(request: web.Request) -> web.StreamResponse:
    """The range as gzip-compressed pprof (``go tool pprof``, Pyroscope, Parca, ...)."""
    from flamed.daemon.export import pprof_for

    name, window = pick_window(request, False)
    service = request.app[SERVICE]
    span = parse_range(request.query, service.clock(), DEFAULT_API_WINDOW)
    selection = window.select(span.start, span.end)
    # A removed target's history stays queryable until the retention: take the
    # default sampling rate for its pprof period then.
    running = service.targets.get(name)
    frequency = running.spec.frequency if running is not None else TargetSpec.frequency
    etag = make_etag(request, name, selection.key)
    thunk, loop = merged(window, selection), asyncio.get_running_loop()

    def work() -> Rendered:
        folded = thunk()
        remember(window, selection, folded, loop)
        data = pprof_for(folded, frequency=frequency, start=span.start, end=span.end, target=name)
        return Rendered(data, b"", PPROF)  # gzip already: never compressed again

    return await cached_response(request, etag, work)


DIFF_KEYS = ("a_from", "a_until", "b_from", "b_until")


def diff_ranges(query: Mapping[str, str], now: float) -> tuple[TimeRange, TimeRange]:
    """(baseline, compared): explicit a_/b_ ranges, or ``baseline=previous``."""
    given = [key for key in DIFF_KEYS if key in query]
    if given:
        missing = [key for key in DIFF_KEYS if key not in query]
        if missing:
            raise UsageError(f"{', '.join(missing)}: missing (give all of {', '.join(DIFF_KEYS)})")
        before = parse_range({"from": query["a_from"], "until": query["a_until"]}, now, 0, "")
        after = parse_range({"from": query["b_from"], "until": query["b_until"]}, now, 0, "")
        return before, after
    baseline = query.get("baseline", "previous")
    if baseline != "previous":
        raise UsageError(f"baseline: {baseline!r} is not `previous` (or give a_from/a_until/...)")
    after = parse_range(query, now, DEFAULT_API_WINDOW)
    width = after.end - after.start
    before = TimeRange(after.start - width, after.start, f"the {format_duration(width)} before")
    return before, after


def selection_note(selection: Selection) -> str:
    if selection.start is None or selection.end is None:
        return "no samples in this range yet"
    samples = sum(bucket.samples for bucket in selection.buckets)
    return f"{format_time(selection.start)} to {format_time(selection.end)}, {samples} samples"


# -- middlewares ---------------------------------------------------------------------------


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except UsageError as err:
        raise web.HTTPBadRequest(text=f"{err}\n") from None
    except FlamedError as err:
        raise web.HTTPBadRequest(text=f"{err}\n") from None


@web.middleware
async def no_body_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route is a GET that takes no body: refuse one at once (413) and close.

    aiohttp would otherwise answer and then read the unwanted body to its end
    (a client could stream 100 MB into every connection); with ``LINGER`` the
    rest is discarded for at most that long before the connection is closed.
    """
    if request.body_exists:
        raise web.HTTPRequestEntityTooLarge(
            max_size=0,
            actual_size=request.content_length or 0,
            text="this API takes no request body\n",
            headers={"Connection": "close"},
        )
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SERVICE].config.server.token
    if token is not None and request.path not in OPEN_PATHS | PAGE_PATHS:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8")):
            raise web.HTTPUnauthorized(
                text="a bearer token is needed\n", headers={"WWW-Authenticate": "Bearer"}
            )
    return await handler(request)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as err:
        code = err.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        elapsed = time.perf_counter() - started
        request.app[METRICS].http_duration.labels(route, str(code)).observe(elapsed)


# -- the app -------------------------------------------------------------------------------


METRICS_TTL = 1.0
"""Seconds one exposition is reused: a scrape storm renders it once (Prometheus scrapes
every 15 s or so; dashboards and alerts never see the difference)."""


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


def create_app(
    config: Config,
    *,
    session_factory: SessionFactory | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
    config_path: str | None = None,
    notifier: Notifier | None = None,
    persist: bool = True,
    watch: bool = True,
    version: str = "unknown",
) -> web.Application:
    """The daemon as an aiohttp application; sessions start when the app starts."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry, version=version)
    factory = session_factory if session_factory is not None else real_session_factory()
    service = Service(
        config,
        session_factory=factory,
        metrics=metrics,
        clock=clock,
        config_path=config_path,
        persist=persist,
    )
    app = web.Application(
        middlewares=[metrics_middleware, no_body_middleware, auth_middleware, errors_middleware]
    )
    app[SERVICE] = service
    app[METRICS] = metrics
    app[LIMITER] = RenderLimiter(config.server.max_renders)
    app[RESPONSES] = ResponseCache()
    app[NOTIFIER] = notifier if notifier is not None else Notifier(env={})
    app[NONCE] = f"{time.time_ns():x}"
    add_routes(app, registry)
    app.cleanup_ctx.append(service_ctx)
    app.cleanup_ctx.append(watchdog_ctx)
    if watch:
        app.cleanup_ctx.append(watchers_ctx)
    return app


def add_routes(app: web.Application, registry: CollectorRegistry) -> None:
    from flamed.daemon.webpage import add_page_routes

    add_page_routes(app)
    get = app.router.add_get
    get("/healthz", healthz)
    get("/readyz", readyz)
    get("/metrics", metrics_handler(registry))
    get("/api/v1/targets", targets)
    get("/api/v1/folded", api_folded)
    get("/api/v1/flamegraph", api_flamegraph)
    get("/api/v1/diff", api_diff)
    get("/api/v1/pprof", api_pprof)
    get("/folded.txt", quick_folded)
    get("/flamegraph.svg", quick_flamegraph)


def real_session_factory() -> SessionFactory:
    """flamed.collector's sessions, told to stop within the daemon's shutdown budget."""
    import functools

    from flamed.collector import create_session
    from flamed.daemon.service import SESSION_STOP

    return functools.partial(create_session, stop_timeout=SESSION_STOP)


async def service_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE]
    await service.start()
    yield
    app[NOTIFIER].stopping()
    await service.stop()


async def watchdog_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[NOTIFIER].watchdog(), name="flamed-sd-watchdog")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def watchers_ctx(app: web.Application) -> AsyncIterator[None]:
    from flamed.daemon.watch import Watchers

    watchers = Watchers(app[SERVICE])
    await watchers.start()
    yield
    await watchers.stop()


# -- the daemon's main task ----------------------------------------------------------------

SHUTDOWN_TIMEOUT = 9.5
HTTP_DRAIN = 1.5
"""Seconds requests under way get at shutdown before their connections are closed."""
STATUS_PERIOD = 10.0
KEEPALIVE = 15.0
"""Seconds an idle connection (or one whose request never completes) is kept open."""
LINGER = 1.0
"""Seconds an unwanted request body is read and discarded after the refusal (aiohttp: 10)."""


async def run_daemon(
    config: Config,
    config_path: str | None,
    *,
    session_factory: SessionFactory | None = None,
    notifier: Notifier | None = None,
    watch: bool = True,
) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code."""
    from flamed.daemon.cli import version

    notifier = notifier if notifier is not None else Notifier()
    app = create_app(
        config,
        session_factory=session_factory,
        config_path=config_path,
        notifier=notifier,
        version=version(),
        watch=watch,
    )
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=KEEPALIVE,  # also how long a silent or trickling client is kept
        lingering_time=LINGER,
        shutdown_timeout=HTTP_DRAIN,  # then the samplers' last buckets are folded and written
    )
    stop = asyncio.Event()
    install_signals(stop, app[SERVICE])
    try:
        await serve(runner, app, config, notifier, stop)
    finally:
        remove_signals()
    return 0


async def serve(
    runner: web.AppRunner,
    app: web.Application,
    config: Config,
    notifier: Notifier,
    stop: asyncio.Event,
) -> None:
    await runner.setup()
    try:
        await start_site(runner, config)
    except FlamedError:
        await runner.cleanup()
        raise
    service = app[SERVICE]
    log.info("listening on http://%s/ (%s)", config.server.listen, service.summary())
    notifier.ready(f"{service.summary()}; http://{config.server.listen}/")
    status = asyncio.create_task(report_status(notifier, service, config.server.listen))
    await stop.wait()
    log.info("stopping")
    status.cancel()
    notifier.stopping()
    try:
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log.warning("shutdown took longer than %gs; leaving the rest", SHUTDOWN_TIMEOUT)


SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


def remove_signals() -> None:
    import signal

    loop = asyncio.get_running_loop()
    for name in SIGNALS:
        loop.remove_signal_handler(getattr(signal, name))


def install_signals(stop: asyncio.Event, service: Service) -> None:
    import signal

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)


async def start_site(runner: web.AppRunner, config: Config) -> None:
    site = web.TCPSite(runner, config.server.host, config.server.port, reuse_address=True)
    try:
        await site.start()
    except OSError as err:
        reason = err.strerror or str(err)
        raise FlamedError(f"cannot listen on {config.server.listen}: {reason}") from None


async def report_status(notifier: Notifier, service: Service, listen: str) -> None:
    while True:
        await asyncio.sleep(STATUS_PERIOD)
        notifier.status(f"{service.summary()}; http://{listen}/")
