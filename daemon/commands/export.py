"""``flamed export pprof|speedscope [options] [FILE|-]``: folded stacks to other profilers'
formats."""

from __future__ import annotations

import argparse
import os
import sys

from flamed.collapse.errors import UsageError
from flamed.collapse.folded import FoldedCollapser
from flamed.daemon.commands.common import (
    collapse_file,
    nothing_found,
    write_atomic,
    write_stdout,
)
from flamed.daemon.commands.declaration import Declaration

NAME = "export"
HELP = "convert folded stacks to another profiler's format (pprof, speedscope)"
DESCRIPTION = """\
Convert folded stacks to a format other profiling tools read. `flamed export
pprof` writes a gzip-compressed pprof profile, the format of `go tool pprof`,
Grafana Pyroscope and Parca; `flamed export speedscope` writes the JSON file
speedscope opens:

    flamed export pprof --frequency 99 profile.folded > profile.pb.gz
    go tool pprof -http=: profile.pb.gz
    flamed export speedscope profile.folded > profile.speedscope.json
"""

PPROF_DESCRIPTION = """\
Write FILE's folded stacks (or stdin's; gzip-compressed input too) as a
gzip-compressed pprof profile: sample types samples/count and cpu/nanoseconds,
one sample per stack with values [count, count * 1e9/HZ]. Fractional counts
are rounded. The output is binary: redirect it or give -o.
"""

SPEEDSCOPE_DESCRIPTION = """\
Write FILE's folded stacks (or stdin's; gzip-compressed input too) as a
speedscope file: one sampled profile, each stack one sample weighted by its
count. Open it at speedscope's page or with `speedscope FILE`.
"""


def add_arguments(parser: Declaration) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    sub = formats.add_parser("pprof", help="gzip-compressed pprof", description=PPROF_DESCRIPTION)
    add = sub.add_argument
    add(
        "-F",
        "--frequency",
        type=float,
        default=99.0,
        metavar="HZ",
        help="the sampling frequency the stacks were recorded at (default: 99, as flamed record)",
    )
    add("--start", type=float, metavar="UNIX", help="when the profile began, unix seconds")
    add("--duration", type=float, metavar="SECONDS", help="how long the profile covers")
    add(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a string label on every sample (repeatable), e.g. --label host=web1",
    )
    add("-o", "--output", metavar="OUT", help="write to OUT (atomically) instead of stdout")
    add("file", nargs="?", default="-", metavar="FILE", help="folded stacks (default: stdin)")
    add_speedscope_arguments(
        formats.add_parser("speedscope", help="speedscope JSON", description=SPEEDSCOPE_DESCRIPTION)
    )


def add_speedscope_arguments(sub: Declaration) -> None:
    add = sub.add_argument
    add("--name", metavar="NAME", help="the profile's name in speedscope (default: FILE's name)")
    add("-o", "--output", metavar="OUT", help="write to OUT (atomically) instead of stdout")
    add("file", nargs="?", default="-", metavar="FILE", help="folded stacks (default: stdin)")


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        labels[name] = value
    return labels


def check_times(args: argparse.Namespace) -> tuple[int, int]:
    if not 0 < args.frequency <= 1e9:
        raise UsageError(f"--frequency {args.frequency:g}: must be above 0 and at most 1e9 Hz")
    for option, value in (("--start", args.start), ("--duration", args.duration)):
        if value is not None and not 0 <= value < 1e11:
            raise UsageError(f"{option} {value:g}: out of range")
    start = round(args.start * 1e9) if args.start is not None else 0
    duration = round(args.duration * 1e9) if args.duration is not None else 0
    return start, duration


def run(args: argparse.Namespace) -> int:
    if args.format == "speedscope":
        return run_speedscope(args)
    from flamed.render.pprof import encode_pprof

    labels = parse_labels(args.label)
    start, duration = check_times(args)
    if args.output is None and sys.stdout.isatty():
        raise UsageError("pprof output is binary: redirect stdout to a file or give -o OUT")
    folded = collapse_file(FoldedCollapser(), args.file)
    if not folded:
        raise nothing_found(args.file, "folded stacks", "`stack count` lines")
    data = encode_pprof(
        folded, frequency=args.frequency, start_ns=start, duration_ns=duration, labels=labels
    )
    if args.output is not None:
        write_atomic(args.output, data)
    else:
        write_stdout(data)
    return 0


def run_speedscope(args: argparse.Namespace) -> int:
    from flamed.daemon.version import version
    from flamed.render.speedscope import speedscope_json

    folded = collapse_file(FoldedCollapser(), args.file)
    name = args.name or ("stdin" if args.file == "-" else os.path.basename(args.file))
    data = speedscope_json(folded, name, exporter=f"flamed {version()}")
    if args.output is not None:
        write_atomic(args.output, data)
    else:
        write_stdout(data)
    return 0
