"""``flamed check-config FILE``: validate a daemon config; exit 0 when good, 1 when not."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from flamed.daemon.commands.declaration import Declaration

if TYPE_CHECKING:
    from flamed.daemon.config import Config

NAME = "check-config"
HELP = "validate a `flamed run` configuration file"
DESCRIPTION = """\
Read FILE as `flamed run --config FILE` would and report the first problem on
one line (file, line, key, reason), exiting 1; or print a summary and exit 0.
Use it before reloading a running daemon (a bad config is refused there too).
A target with `offcpu = true` gets a warning for each thing this machine lacks
for off-CPU profiles (bpftrace, root, tracefs); its CPU profile would still run.
"""


def add_arguments(parser: Declaration) -> None:
    parser.add_argument("file", metavar="FILE", help="the TOML configuration")


def run(args: argparse.Namespace) -> int:
    from flamed.daemon.config import load_config
    from flamed.daemon.timerange import format_duration

    config = load_config(args.file)
    warn_offcpu(args.file, config)
    names = ", ".join(spec.name for spec in config.targets)
    storage = config.storage
    print(
        f"{args.file}: ok: {len(config.targets)} target(s) ({names}); "
        f"listen {config.server.listen}; bucket {format_duration(storage.bucket)}, "
        f"retention {format_duration(storage.retention)}, state in {storage.state_dir}"
    )
    return 0


def warn_offcpu(file: str, config: Config) -> None:
    """A warning per target and missing piece of what off-CPU profiles need."""
    import logging

    from flamed.collector.offcpu import offcpu_problems

    log = logging.getLogger("flamed.daemon")
    for spec in config.targets:
        sampler = config.sampler(spec.name)
        if not sampler.offcpu:
            continue
        for problem in offcpu_problems(sampler.bpftrace_path or "bpftrace"):
            log.warning("%s: target %s: %s (its CPU profile runs all the same)",
                        file, spec.name, problem)  # fmt: skip
