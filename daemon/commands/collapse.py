"""``flamed collapse FORMAT [options] [FILE|-]``: profiler output to folded stacks.

Each format has a row in FORMATS: its help, its options, and how to build its
collapser from the parsed arguments. Output is sorted bytewise on stdout.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable

from flamed.collapse.common import Collapser
from flamed.daemon.commands.common import collapse_path, write_stdout
from flamed.daemon.commands.helpformat import HelpFormatter

NAME = "collapse"
# Collapsers warn through WarnOnce only, which imports logging at the first warning.
LAZY_LOGGING = True
HELP = "fold profiler output (perf script, DTrace) into folded stacks"
DESCRIPTION = """\
Fold profiler output into folded stacks: one `frame;frame;frame COUNT` line per
distinct stack, root first, sorted bytewise. Reads FILE (gzip-compressed too) or
stdin. Drop-in for FlameGraph's stackcollapse-*.pl scripts, with the same options.
"""


class Format:
    """One input format: its help, its options and how to build its collapser.
    (Not a dataclass: importing dataclasses costs start-up time.)"""

    def __init__(
        self,
        help: str,
        description: str,
        add_arguments: Callable[[argparse.ArgumentParser], None],
        make_collapser: Callable[[argparse.Namespace], Collapser],
    ) -> None:
        self.help = help
        self.description = description
        self.add_arguments = add_arguments
        self.make_collapser = make_collapser


def add_perf_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--pid", action="store_true", help="append the process id to the command name: comm-PID")
    add("--tid", action="store_true", help="append process and thread id: comm-PID/TID")
    add("--kernel", action="store_true", help="annotate kernel frames with _[k]")
    add("--jit", action="store_true", help="annotate JIT frames (/tmp/perf-PID.map) with _[j]")
    add("--all", action="store_true", help="all annotations (--kernel --jit)")
    add("--addrs", action="store_true", help="show raw addresses where a symbol is unknown")
    add(
        "--event-filter",
        metavar="EVENT",
        help="keep samples of EVENT only (default: the first event seen); "
        "modifiers are ignored, so `cycles` matches `cycles:u`",
    )
    add(
        "--skip-after",
        metavar="SYMBOL",
        action="append",
        default=[],
        help="drop the callers of the first (leafmost) frame named SYMBOL, and the "
        "command name; repeatable",
    )
    add(
        "--srcline",
        action="store_true",
        help="input is `perf script -F+srcline`: append each frame's source line",
    )


def make_perf_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.perf import PerfCollapser, PerfOptions

    return PerfCollapser(
        PerfOptions(
            include_pid=args.pid,
            include_tid=args.tid,
            annotate_kernel=args.kernel or args.all,
            annotate_jit=args.jit or args.all,
            include_addrs=args.addrs,
            event_filter=args.event_filter,
            skip_after=tuple(args.skip_after),
            srcline=args.srcline,
        )
    )


def add_dtrace_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--includeoffset",
        action="store_true",
        help="keep each frame's +0x... offset, except the leaf's",
    )


def make_dtrace_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions

    return DTraceCollapser(DTraceOptions(include_offset=args.includeoffset))


def add_no_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def make_guess_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.guess import GuessCollapser

    return GuessCollapser()


FORMATS: dict[str, Format] = {
    "perf": Format(
        help="`perf script` output (stackcollapse-perf.pl)",
        description="Fold `perf script` output; same options and output as stackcollapse-perf.pl.",
        add_arguments=add_perf_arguments,
        make_collapser=make_perf_collapser,
    ),
    "dtrace": Format(
        help="DTrace stack()/ustack() aggregation output (stackcollapse.pl)",
        description="Fold the output of a DTrace aggregation keyed on stack() or ustack() "
        "(`@[ustack()] = count();`); same output as stackcollapse.pl. Several dumps one "
        "after another (printa in a tick probe) are added up; each dump's header is skipped.",
        add_arguments=add_dtrace_arguments,
        make_collapser=make_dtrace_collapser,
    ),
    "guess": Format(
        help="tell the format (perf script, DTrace, folded) from the first lines",
        description="Detect the input format from its first lines (perf script, DTrace "
        "aggregation, folded stacks) and fold it with that format's defaults.",
        add_arguments=add_no_arguments,
        make_collapser=make_guess_collapser,
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, fmt in FORMATS.items():
        sub = formats.add_parser(
            name, help=fmt.help, description=fmt.description, formatter_class=HelpFormatter
        )
        fmt.add_arguments(sub)
        sub.add_argument(
            "file", nargs="?", default="-", metavar="FILE", help="input (default: stdin)"
        )


def run(args: argparse.Namespace) -> int:
    # One collapse, then the process ends: the cyclic garbage collector's passes over
    # the many short-lived tuples of a large input cost ~10% and would free nothing.
    gc.disable()
    collapser = FORMATS[args.format].make_collapser(args)
    folded = collapse_path(collapser, args.file)
    write_stdout(folded.to_bytes())
    return 0
