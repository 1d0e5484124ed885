"""``flamed check-config FILE``: validate a daemon config; exit 0 when good, 1 when not."""

from __future__ import annotations

import argparse

NAME = "check-config"
HELP = "validate a `flamed run` configuration file"
DESCRIPTION = """\
Read FILE as `flamed run --config FILE` would and report the first problem on
one line (file, line, key, reason), exiting 1; or print a summary and exit 0.
Use it before reloading a running daemon (a bad config is refused there too).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the TOML configuration")


def run(args: argparse.Namespace) -> int:
    from flamed.daemon.config import load_config
    from flamed.daemon.timerange import format_duration

    config = load_config(args.file)
    names = ", ".join(spec.name for spec in config.targets)
    storage = config.storage
    print(
        f"{args.file}: ok: {len(config.targets)} target(s) ({names}); "
        f"listen {config.server.listen}; bucket {format_duration(storage.bucket)}, "
        f"retention {format_duration(storage.retention)}, state in {storage.state_dir}"
    )
    return 0
