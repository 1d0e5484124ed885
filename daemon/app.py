"""The HTTP API (a contract): the app factory, its routes, and handlers of a few lines each.

``create_app(config, ...)`` builds the application; its state lives in typed
``web.AppKey``s and the long-running parts (the service with its sessions and
writer, the config and inbox watchers, the systemd watchdog) are
``cleanup_ctx`` contexts that stop cleanly. A handler reads its parameters
(``flamed.daemon.timerange``), asks the service for a ``Query``, and hands a
body-making function from ``flamed.daemon.renders`` to the ``Responder``
(``flamed.daemon.responses``: ETag, 304, cache, gzip, render limit). A user's
error is a ``FlamedError`` that the errors middleware turns into a one-line
400 (404 for an unknown target). New routes go in ``add_routes``, new
middlewares in ``middlewares``.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from flamed.collapse.errors import UsageError
from flamed.daemon import renders
from flamed.daemon.config import Config
from flamed.daemon.metrics import Metrics
from flamed.daemon.middlewares import (
    auth_middleware,
    errors_middleware,
    host_middleware,
    metrics_middleware,
    no_body_middleware,
)
from flamed.daemon.notify import Notifier
from flamed.daemon.query import QUERY_TYPES, ProfileQuery, PythonView
from flamed.daemon.responses import Rendered, Responder, metrics_handler
from flamed.daemon.service import Service
from flamed.daemon.supervisor import SessionFactory, default_factory
from flamed.daemon.timerange import DIFF_KEYS, RANGE_KEYS, diff_ranges, parse_range
from flamed.daemon.webpage import PAGE_PATHS, add_page_routes

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware

SERVICE = web.AppKey("service", Service)
METRICS = web.AppKey("metrics", Metrics)
NOTIFIER = web.AppKey("notifier", Notifier)
RESPONDER = web.AppKey("responder", Responder)
VERSION = web.AppKey("version", str)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Never need the bearer token (nor do the web page's paths, which hold no data)."""
API_WINDOW = 300.0
"""Seconds ``/api/v1/...`` covers without ``window`` or ``from``."""
QUICK_WINDOW = 60.0
"""Seconds ``/flamegraph.svg`` and ``/folded.txt`` cover without ``window`` or ``from``."""
RANGE_PARAMS = frozenset({"target", "type", "python", *RANGE_KEYS})
"""What every profile endpoint takes; each adds its own (a graph, the render options)."""
DIFF_PARAMS = RANGE_PARAMS | {"baseline", *DIFF_KEYS}


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
    service = Service(
        config,
        session_factory=session_factory or default_factory(),
        metrics=metrics,
        clock=clock,
        config_path=config_path,
        persist=persist,
    )
    app = web.Application(middlewares=middlewares(service, metrics))
    app[SERVICE] = service
    app[METRICS] = metrics
    app[RESPONDER] = Responder(config.server.max_renders)
    app[NOTIFIER] = notifier if notifier is not None else Notifier(env={})
    app[VERSION] = version
    add_routes(app, registry)
    app.cleanup_ctx.append(service_ctx)
    app.cleanup_ctx.append(watchdog_ctx)
    if watch:
        app.cleanup_ctx.append(watchers_ctx)
    return app


def middlewares(service: Service, metrics: Metrics) -> list[Middleware]:
    """Outermost first: every request is measured; a body (refused before it is read), a
    foreign Host or a missing token never reaches a handler; a handler's user error becomes
    its one-line answer."""
    return [
        metrics_middleware(metrics.http_duration),
        no_body_middleware,
        host_middleware(lambda: service.config.server.allowed_hosts),
        auth_middleware(lambda: service.config.server.token, OPEN_PATHS | PAGE_PATHS),
        errors_middleware,
    ]


def add_routes(app: web.Application, registry: CollectorRegistry) -> None:
    add_page_routes(app)
    get = app.router.add_get
    get("/healthz", healthz)
    get("/readyz", readyz)
    get("/metrics", metrics_handler(registry))
    get("/api/v1/targets", targets)
    get("/api/v1/folded", functools.partial(folded, window=API_WINDOW, quick=False))
    get("/api/v1/flamegraph", functools.partial(flamegraph, window=API_WINDOW, quick=False))
    get("/api/v1/diff", diff)
    get("/api/v1/pprof", pprof)
    get("/api/v1/profile", profile)
    get("/api/v1/timeline", timeline)
    get("/api/v1/speedscope", speedscope)
    get("/folded.txt", functools.partial(folded, window=QUICK_WINDOW, quick=True))
    get("/flamegraph.svg", functools.partial(flamegraph, window=QUICK_WINDOW, quick=True))


# -- handlers ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ok, reason = request.app[SERVICE].ready()
    return web.Response(status=200 if ok else 503, text=reason + "\n")


async def targets(request: web.Request) -> web.Response:
    body = request.app[SERVICE].describe_all()
    return web.json_response(body, dumps=lambda obj: json.dumps(obj, indent=1))


async def folded(request: web.Request, window: float, quick: bool) -> web.StreamResponse:
    query = ask(request, window, quick)
    return await respond(request, (query.key,), functools.partial(renders.folded_text, query))


async def flamegraph(request: web.Request, window: float, quick: bool) -> web.StreamResponse:
    query = ask(request, window, quick, renders.render_params())
    title = f"{query.target}: {query.span.label}"
    if query.profile != "cpu":
        title = f"{query.target} ({query.profile}): {query.span.label}"
    options = renders.render_options(request.query, title, renders.note(query), query.profile)
    timer = request.app[METRICS].render_seconds
    work = functools.partial(renders.flamegraph, query, options, timer)
    return await respond(request, (query.key, query.span.label), work)  # the title names it


async def diff(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE]
    check_params(request, DIFF_PARAMS | renders.render_params())
    name = target_param(request, quick=False)
    before, after = diff_ranges(request.query, service.now(), API_WINDOW)
    kind = type_param(request)
    a = viewed(request, service.query(name, before, kind))
    b = viewed(request, service.query(name, after, kind))
    title = f"{name}: {after.label} against {before.label}"
    options = renders.render_options(request.query, title, renders.note(b), kind)
    timer = request.app[METRICS].render_seconds
    work = functools.partial(renders.diff, a, b, options, timer)
    return await respond(request, (a.key, b.key, title), work)


async def pprof(request: web.Request) -> web.StreamResponse:
    query = ask(request, API_WINDOW, quick=False)
    one_type(query)
    return await respond(request, (query.key,), functools.partial(renders.pprof, query))


async def profile(request: web.Request) -> web.StreamResponse:
    """The range as the web page's compact JSON call tree."""
    query = ask(request, API_WINDOW, quick=False)
    return await respond(request, (query.key,), functools.partial(renders.profile_json, query))


async def timeline(request: web.Request) -> web.StreamResponse:
    """Samples per bucket over the range, from bucket metadata (made on the loop: cheap)."""
    query = ask(request, API_WINDOW, quick=False)
    one_type(query)
    work = functools.partial(renders.timeline, query)
    return request.app[RESPONDER].respond_now(request, (query.key,), work)


async def speedscope(request: web.Request) -> web.StreamResponse:
    query = ask(request, API_WINDOW, quick=False)
    exporter = f"flamed {request.app[VERSION]}"
    work = functools.partial(renders.speedscope, query, exporter)
    return await respond(request, (query.key,), work)


# -- what the handlers share ---------------------------------------------------------------


def target_param(request: web.Request, quick: bool) -> str:
    """``target``; the quick endpoints default to the first configured target."""
    name = request.query.get("target")
    if name is not None:
        return name
    if not quick:
        raise UsageError("target: missing (see /api/v1/targets)")
    return request.app[SERVICE].first_target()


def type_param(request: web.Request) -> str:
    """``type``: the profile type, ``cpu`` unless given."""
    kind = request.query.get("type", "cpu")
    if kind not in QUERY_TYPES:
        raise UsageError(f"type: unknown profile type {kind[:40]!r} ({', '.join(QUERY_TYPES)})")
    return kind


def one_type(query: ProfileQuery) -> None:
    """The endpoints whose answer has one unit (pprof's sample types, the timeline's counts)
    refuse ``hotcold``."""
    if query.profile == "hotcold":
        raise UsageError("type: hotcold is for graphs and folded text; ask cpu or offcpu here")


def ask(
    request: web.Request, window: float, quick: bool, more: Collection[str] = ()
) -> ProfileQuery:
    """The query the request's ``target``, ``type``, ``window``, ``from`` and ``until`` name;
    the request may give those and the parameters named in ``more``, nothing else."""
    check_params(request, RANGE_PARAMS.union(more))
    service = request.app[SERVICE]
    name = target_param(request, quick)
    span = parse_range(request.query, service.now(), window)
    return viewed(request, service.query(name, span, type_param(request)))


def viewed(request: web.Request, query: ProfileQuery) -> ProfileQuery:
    """``python=1``: the query in the Python view; ``python=0`` (the default): as stored."""
    value = request.query.get("python", "0")
    if value not in ("0", "1"):
        raise UsageError(f"python: expected 0 or 1, not {value[:20]!r}")
    return PythonView(query) if value == "1" else query


def check_params(request: web.Request, accepted: Collection[str]) -> None:
    """A parameter the endpoint does not take (a typo: ``colour=``) is refused, naming the
    accepted ones, and so is one given twice (but ``base``), instead of being ignored."""
    query = request.query
    for key in query:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, 1, 0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = ", ".join(sorted(accepted))
            raise UsageError(f"unknown parameter {key[:60]!r}{hint}; accepted: {listed}")
        if len(query.getall(key)) > 1 and key not in renders.repeatable_params():
            raise UsageError(f"{key}: given more than once")


async def respond(
    request: web.Request, parts: tuple[object, ...], work: Callable[[], Rendered]
) -> web.StreamResponse:
    return await request.app[RESPONDER].respond(request, parts, work)


# -- background work -----------------------------------------------------------------------


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
