"""The daemon's process: serve until a signal, reload on SIGHUP, stop within a bound.

``run_daemon`` builds the app (``flamed.daemon.app``), listens, tells systemd
it is ready (and, every ``STATUS_PERIOD``, how the targets are), and waits.
Signal handlers only set a flag or ask for a reload; the main task acts on
them. Shutdown is bounded: requests under way get ``HTTP_DRAIN`` seconds, the
samplers and the last bucket files the rest of ``SHUTDOWN_TIMEOUT``, then what
is left is abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from flamed.collapse.errors import FlamedError
from flamed.daemon.app import SERVICE, create_app
from flamed.daemon.config import Config
from flamed.daemon.notify import Notifier
from flamed.daemon.ratelimit import LogLimiter
from flamed.daemon.service import Service
from flamed.daemon.statelock import lock_state_dir
from flamed.daemon.supervisor import SessionFactory
from flamed.daemon.version import version

log = logging.getLogger("flamed.daemon.server")

SHUTDOWN_TIMEOUT = 9.5
HTTP_DRAIN = 1.5
"""Seconds requests under way get at shutdown before their connections are closed."""
STATUS_PERIOD = 10.0
KEEPALIVE = 15.0
"""Seconds an idle connection (or one whose request never completes) is kept open."""
LINGER = 1.0
"""Seconds an unwanted request body is read and discarded after the refusal (aiohttp: 10)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
BAD_REQUEST_LOG_EVERY = 600.0
"""Seconds between two log lines for the same kind of malformed request."""


class BadRequests(logging.Filter):
    """aiohttp logs every malformed request (a request line over 8 KB, a header flood) at
    ERROR with its traceback, so a remote client could fill the journal: such a record
    becomes one warning line, at most one per kind every ``BAD_REQUEST_LOG_EVERY`` seconds.
    Other records pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.limiter = LogLimiter(BAD_REQUEST_LOG_EVERY)

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        if not isinstance(err, HttpProcessingError):
            return True
        kind = type(err).__name__
        if not self.limiter.allow(kind):
            return False
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "refused a malformed request from %s (%s); such lines come at most every %g s"
        record.args = (remote, kind, BAD_REQUEST_LOG_EVERY)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def request_logger() -> logging.Logger:
    """The logger aiohttp's connection handlers report to, with ``BadRequests`` on it."""
    logger = logging.getLogger("flamed.daemon.http")
    if not any(isinstance(known, BadRequests) for known in logger.filters):
        logger.addFilter(BadRequests())
    return logger


async def run_daemon(
    config: Config,
    config_path: str | None,
    *,
    session_factory: SessionFactory | None = None,
    notifier: Notifier | None = None,
    watch: bool = True,
) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code.

    The state folder is locked before anything reads or writes it, until the daemon
    exits: a second daemon on the same folder fails here (FlamedError, exit 1).
    """
    with lock_state_dir(config.storage.state_dir):
        await serve_app(config, config_path, session_factory, notifier, watch)
    return 0


async def serve_app(
    config: Config,
    config_path: str | None,
    session_factory: SessionFactory | None,
    notifier: Notifier | None,
    watch: bool,
) -> None:
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
        logger=request_logger(),
    )
    stop = asyncio.Event()
    install_signals(stop, app[SERVICE])
    try:
        await serve(runner, app[SERVICE], config, notifier, stop)
    finally:
        remove_signals()


async def serve(
    runner: web.AppRunner,
    service: Service,
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
    log.info(
        "listening on http://%s/; state in %s; targets: %s",
        config.server.listen, config.storage.state_dir, service.describe_targets(),
    )  # fmt: skip
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


def install_signals(stop: asyncio.Event, service: Service) -> None:
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)


def remove_signals() -> None:
    loop = asyncio.get_running_loop()
    for signum in (*STOP_SIGNALS, signal.SIGHUP):
        loop.remove_signal_handler(signum)


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
