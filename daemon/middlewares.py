"""What every request goes through before its handler (``flamed.daemon.app`` orders them).

Each is a plain aiohttp middleware, or made by a function from what it needs
(the token, the latency histogram), so none reaches into the app's state.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import Histogram

from flamed.collapse.errors import FlamedError
from flamed.daemon.query import UnknownTarget
from flamed.daemon.responses import Handler

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware


HOST_HEADER = re.compile(r"(?:\[([0-9a-f:.]+)\]|([^\[\]:\s]+))(?::\d{1,5})?")
"""``name``, ``name:port``, ``address:port``, ``[v6]``, ``[v6]:port`` (lower case)."""


def host_middleware(allowed: Callable[[], Collection[str]]) -> Middleware:
    """Only requests whose ``Host`` names this daemon (``host_allowed``): a web page on any
    site can make a browser resolve the page's own name to 127.0.0.1 (DNS rebinding) and
    read the API; its requests then carry that name and are refused with 421.
    ``allowed()`` is asked per request, so a reload that changes it applies at once."""

    @web.middleware
    async def host(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Host")
        if not host_allowed(given, allowed()):
            shown = "no Host header" if given is None else f"Host {given[:100]!r}"
            raise web.HTTPMisdirectedRequest(
                text=f"{shown} does not name this daemon: use 127.0.0.1 or localhost, "
                "or list the name in [server] allowed_hosts\n"
            )
        return await handler(request)

    return host


def host_allowed(header: str | None, names: Collection[str]) -> bool:
    """``localhost``, an IP address (no DNS name, nothing to rebind), or one of ``names``
    (lower case), with any port."""
    match = HOST_HEADER.fullmatch(header.strip().lower()) if header else None
    if match is None:
        return False
    name = (match.group(1) or match.group(2)).removesuffix(".")
    return name == "localhost" or name in names or is_address(name)


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A user's error in one line: an unknown target is a 404, anything else a 400."""
    try:
        return await handler(request)
    except UnknownTarget as err:
        raise web.HTTPNotFound(text=f"{err}\n") from None
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


def auth_middleware(token: Callable[[], str | None], open_paths: Collection[str]) -> Middleware:
    """``Authorization: Bearer <token>`` on every path but ``open_paths`` (while a token is set;
    ``token()`` is asked per request, so a reload that changes it applies at once)."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        expected = token()
        if expected is not None and request.path not in open_paths:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, f"Bearer {expected}".encode()):
                raise web.HTTPUnauthorized(
                    text="a bearer token is needed\n", headers={"WWW-Authenticate": "Bearer"}
                )
        return await handler(request)

    return auth


def metrics_middleware(histogram: Histogram) -> Middleware:
    """Each request's latency by route (the router's pattern, never the raw path) and code."""

    @web.middleware
    async def measured(request: web.Request, handler: Handler) -> web.StreamResponse:
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
            histogram.labels(route, str(code)).observe(elapsed)

    return measured
