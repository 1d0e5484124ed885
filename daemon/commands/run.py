"""``flamed run [--config FILE] [--listen HOST:PORT]``: the always-on daemon."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from flamed.collapse.errors import UsageError
from flamed.daemon.commands.declaration import Declaration

NAME = "run"
HELP = "run the daemon: sample targets, keep rolling windows, serve graphs and metrics"
DESCRIPTION = """\
Sample the configured targets with perf (or DTrace), keep rolling windows of
folded stacks in memory and in the state directory, and serve flame graphs,
folded text and Prometheus metrics over HTTP. Without --config, the embedded
default profiles the whole machine at 99 Hz and listens on 127.0.0.1:9797.

SIGHUP (or editing the config file) reloads the config; a bad one is refused
and the running one kept. SIGTERM or SIGINT stops cleanly, keeping the last
bucket. Under systemd, Type=notify and WatchdogSec= are supported.
"""


def add_arguments(parser: Declaration) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration (default: the embedded one)"
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="override [server] listen from the config"
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from flamed.daemon.config import load_config, parse_listen
    from flamed.daemon.server import run_daemon

    config = load_config(args.config)
    if args.listen:
        try:
            host, port = parse_listen(args.listen)
        except ValueError as err:
            raise UsageError(f"--listen: {err}") from None
        server = dataclasses.replace(config.server, host=host, port=port)
        config = dataclasses.replace(config, server=server)
    if not getattr(args, "quiet", False) and not getattr(args, "verbose", 0):
        logging.getLogger("flamed").setLevel(logging.INFO)
    return asyncio.run(run_daemon(config, args.config))
