"""``flamed collapse FORMAT [options] [FILE|-]``: profiler output to folded stacks.

Each format has a row in FORMATS: its help, its options, and how to build its
collapser from the parsed arguments. Output is sorted bytewise on stdout.
"""

from __future__ import annotations

import gc
import os

from flamed.collapse.common import TYPE_CHECKING, Collapser, retire_into
from flamed.collapse.errors import InputError
from flamed.collapse.folded import Folded
from flamed.daemon.commands.common import (
    KEPT,
    collapse_file,
    map_file,
    nothing_found,
    plain_file_size,
    read_whole,
    write_stdout,
)
from flamed.daemon.commands.declaration import Declaration, add_log_flags

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from mmap import mmap

NAME = "collapse"
# Plain perf script files this large are folded on several cores; measured in
# tests/bench/bench_perf.py (-n 1 against the default) for pure Python, and in
# tests/bench/bench_parts.py for the C folder, whose own loop is ~10x faster: forking and
# adding up the child's stacks cost as much as half the fold saves up to ~12 MiB (16 MiB:
# -9%, 31 MiB: -24% of the fold's time). DTrace's C folder counts 16 MB of stacks in
# ~15-20 ms, which two cores did not make faster: it is never split.
PERF_SPLIT_BYTES = 8 << 20
PERF_NATIVE_SPLIT_BYTES = 16 << 20
SPLIT_MAX_BYTES = 2 << 30
# Plain files up to this size are mapped, not read, for a collapser that reads them
# where they lie; larger ones are read in chunks, so a file without a blank line, which
# perf's reader then copies, costs no more than this.
MAP_MAX_BYTES = 256 << 20
# Collapsers warn through WarnOnce only, which imports logging at the first warning.
LAZY_LOGGING = True
# One conversion, then the process ends: skip freeing its many objects one by one.
FAST_EXIT = True
HELP = "fold profiler output (perf script, DTrace, and more) into folded stacks"
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
        add_arguments: Callable[[Declaration], None],
        make_collapser: Callable[[argparse.Namespace], Collapser],
        records: str,
        expected: str,
        split_bytes: int = 0,
        native_split_bytes: int = 0,
    ) -> None:
        self.help = help
        self.description = description
        self.add_arguments = add_arguments
        self.make_collapser = make_collapser
        self.records = records
        """What the input holds, for "no RECORDS in FILE" when nothing was recognised."""
        self.expected = expected
        """What input the format takes, for that message."""
        self.split_bytes = split_bytes
        """Plain files this large are folded on several cores (0: never)."""
        self.native_split_bytes = native_split_bytes
        """The same, where the C speedups fold."""


def add_perf_arguments(parser: Declaration) -> None:
    add = parser.add_argument
    add("--pid", action="store_true", help="append the process id to the command name: comm-PID")
    add("--tid", action="store_true", help="append process and thread id: comm-PID/TID")
    add("--kernel", action="store_true", help="annotate kernel frames with _[k]")
    add(
        "--jit",
        action="store_true",
        help="annotate JIT frames (/tmp/perf-PID.map, jitted-*.so) with _[j]",
    )
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
    add(
        "--inline",
        action="store_true",
        help="show inlined functions, through addr2line (input of `perf script --no-inline`)",
    )
    add("--context", action="store_true", help="with --inline: add each frame's file:line")
    add(
        "--python",
        action="store_true",
        help="Python view of CPython 3.12+ -X perf stacks: py::f:file frames as `f (file)`, "
        "the interpreter's frames between them left out",
    )


def make_perf_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.perf import PerfCollapser, PerfOptions

    tools = None
    if args.inline:
        from flamed.collector.binutils import Binutils

        tools = Binutils()
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
            inline=args.inline,
            context=args.context,
            python=args.python,
        ),
        tools,
    )


def add_dtrace_arguments(parser: Declaration) -> None:
    parser.add_argument(
        "--includeoffset",
        action="store_true",
        help="keep each frame's +0x... offset, except the leaf's",
    )


def make_dtrace_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions

    return DTraceCollapser(DTraceOptions(include_offset=args.includeoffset))


def add_threads_argument(parser: Declaration) -> None:
    parser.add_argument(
        "-n",
        "--nthreads",
        type=positive_int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="fold a large file on up to N cores (default: all of them; inferno's option)",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from argparse import ArgumentTypeError  # only for the error: start-up time counts

        raise ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def add_no_arguments(parser: Declaration) -> None:
    del parser


def add_no_modules(parser: Declaration) -> None:
    parser.add_argument(
        "--no-modules", action="store_true", help="function names alone, without their module"
    )


def add_ghcprof_arguments(parser: Declaration) -> None:
    source = parser.add_mutually_exclusive_group()
    add = source.add_argument
    add(
        "--time",
        dest="source",
        action="store_const",
        const="time",
        help="count individual %%time, in tenths of a percent (the default)",
    )
    add(
        "--ticks",
        dest="source",
        action="store_const",
        const="ticks",
        help="count the ticks column (+RTS -P)",
    )
    add(
        "--bytes",
        dest="source",
        action="store_const",
        const="bytes",
        help="count the bytes column (+RTS -P)",
    )
    parser.set_defaults(source="time")


def make_recursive_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.recursive import RecursiveCollapser

    return RecursiveCollapser()


def make_sample_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.sample import SampleCollapser, SampleOptions

    return SampleCollapser(SampleOptions(modules=not args.no_modules))


def make_xctrace_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.xctrace import XctraceCollapser

    return XctraceCollapser()


def make_vtune_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.vtune import VTuneCollapser, VTuneOptions

    return VTuneCollapser(VTuneOptions(modules=not args.no_modules))


def make_vsprof_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.vsprof import VsprofCollapser

    return VsprofCollapser()


def make_ghcprof_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.ghcprof import GhcProfCollapser, GhcProfOptions

    return GhcProfCollapser(GhcProfOptions(source=args.source))


def make_bpftrace_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.bpftrace import BpftraceCollapser

    return BpftraceCollapser()


def make_guess_collapser(args: argparse.Namespace) -> Collapser:
    from flamed.collapse.guess import GuessCollapser

    return GuessCollapser()


FORMATS: dict[str, Format] = {
    "perf": Format(
        help="`perf script` output (stackcollapse-perf.pl)",
        description="Fold `perf script` output; same options and output as stackcollapse-perf.pl.",
        add_arguments=add_perf_arguments,
        make_collapser=make_perf_collapser,
        records="perf script records",
        expected="`perf script` output",
        split_bytes=PERF_SPLIT_BYTES,
        native_split_bytes=PERF_NATIVE_SPLIT_BYTES,
    ),
    "dtrace": Format(
        help="DTrace stack()/ustack() aggregation output (stackcollapse.pl)",
        description="Fold the output of a DTrace aggregation keyed on stack() or ustack() "
        "(`@[ustack()] = count();`); same output as stackcollapse.pl. Several dumps one "
        "after another (printa in a tick probe) are added up; each dump's header is skipped.",
        add_arguments=add_dtrace_arguments,
        make_collapser=make_dtrace_collapser,
        records="DTrace stacks",
        expected="the output of a DTrace aggregation on stack() or ustack()",
    ),
    "recursive": Format(
        help="merge direct recursion in folded stacks (stackcollapse-recursive.pl)",
        description="Read folded stacks and keep one frame of each run of a frame calling "
        "itself (main;fib;fib;fib;add -> main;fib;add), adding up the stacks that meet; "
        "same output as stackcollapse-recursive.pl.",
        add_arguments=add_no_arguments,
        make_collapser=make_recursive_collapser,
        records="folded stacks",
        expected="`stack count` lines",
    ),
    "sample": Format(
        help="macOS `sample` reports (stackcollapse-sample.awk)",
        description="Fold the call graph of a macOS `sample PID -file FILE` report: each "
        "node counts its samples less its callees'; frames are library`function. Threads "
        "waiting in mach_msg_trap, __psynch_cvwait and the like are left out. Same output "
        "as stackcollapse-sample.awk.",
        add_arguments=add_no_modules,
        make_collapser=make_sample_collapser,
        records="sample call graph",
        expected="a macOS `sample` report",
    ),
    "xctrace": Format(
        help="Instruments `xctrace export` XML (inferno-collapse-xctrace)",
        description="Fold a Time Profiler table exported by `xctrace export --xpath "
        "'/trace-toc/run[1]/data/table[@schema=\"time-profile\"]'`: one sample per row. "
        "Same output as inferno-collapse-xctrace.",
        add_arguments=add_no_arguments,
        make_collapser=make_xctrace_collapser,
        records="xctrace samples",
        expected="`xctrace export` Time Profiler XML",
    ),
    "vtune": Format(
        help="Intel VTune top-down CSV (inferno-collapse-vtune)",
        description="Fold a VTune top-down report exported as CSV with the columns "
        '"CPU Time:Self","Module" (-report top-down -call-stack-mode all -format csv '
        "-csv-delimiter comma): each function's own CPU time in milliseconds. Same output "
        "as inferno-collapse-vtune.",
        add_arguments=add_no_modules,
        make_collapser=make_vtune_collapser,
        records="VTune rows",
        expected="a VTune top-down CSV report",
    ),
    "vsprof": Format(
        help="Visual Studio profiler call-tree CSV (stackcollapse-vsprof.pl)",
        description="Fold a call tree exported as CSV from the Visual Studio profiler: a "
        "sampling export (Inclusive Samples) as stackcollapse-vsprof.pl folds it, an "
        "instrumentation export (Number of Calls) as inferno-collapse-vsprof does.",
        add_arguments=add_no_arguments,
        make_collapser=make_vsprof_collapser,
        records="call-tree rows",
        expected="a Visual Studio profiler call-tree CSV",
    ),
    "ghcprof": Format(
        help="GHC profiling reports, .prof (inferno-collapse-ghcprof)",
        description="Fold the call tree of a GHC `+RTS -p` report: each cost centre's "
        "individual cost, as %time in tenths of a percent (--time, the default), ticks or "
        "bytes (--ticks, --bytes: the report needs +RTS -P). Same output as "
        "inferno-collapse-ghcprof.",
        add_arguments=add_ghcprof_arguments,
        make_collapser=make_ghcprof_collapser,
        records="GHC cost centres",
        expected="a GHC .prof report",
    ),
    "bpftrace": Format(
        help="bpftrace stack maps, @[kstack, ustack, comm] (stackcollapse-bpftrace.pl)",
        description="Fold the maps bpftrace prints on exit, keyed on stacks and a name "
        "(`@[kstack, ustack, comm] = count();`, `@[kstack] = count();`): comm, user stack, "
        "kernel stack, root first. Same output as stackcollapse-bpftrace.pl.",
        add_arguments=add_no_arguments,
        make_collapser=make_bpftrace_collapser,
        records="bpftrace stacks",
        expected="bpftrace stack maps (@[kstack, ustack, comm] = count())",
    ),
    "guess": Format(
        help="tell the format from the first lines (every format above but recursive)",
        description="Detect the input format from its first lines (perf script, DTrace "
        "aggregation, sample, xctrace, VTune, Visual Studio, GHC, bpftrace, folded stacks) "
        "and fold it with that format's defaults.",
        add_arguments=add_no_arguments,
        make_collapser=make_guess_collapser,
        records="profile",
        expected="output of one of the formats in `flamed collapse --help`",
    ),
}


def add_arguments(parser: Declaration) -> None:
    add_arguments_for(parser, ())


def add_arguments_for(parser: Declaration, words: Sequence[str]) -> None:
    """The formats' parsers; only the one named first in ``words`` (the line after
    `collapse`) if it is one: building all ten cost ~2 ms at every start."""
    from flamed.collapse.speedups import COLLAPSE, describe

    epilog = f"collapsers: {describe((COLLAPSE,))}"
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    named = next((word for word in words if not word.startswith("-")), None)
    chosen = {named: FORMATS[named]} if named in FORMATS else FORMATS
    for name, fmt in chosen.items():
        sub = formats.add_parser(
            name,
            help=fmt.help,
            description=fmt.description,
            formatter_class="flamed",  # helpformat.HelpFormatter
            epilog=epilog,
        )
        fmt.add_arguments(sub)
        if name in ("perf", "dtrace"):
            add_threads_argument(sub)
        add_log_flags(sub)
        sub.add_argument(
            "file", nargs="?", default="-", metavar="FILE", help="input (default: stdin)"
        )


def run(args: argparse.Namespace) -> int:
    # One collapse, then the process ends: the cyclic garbage collector's passes over
    # the many short-lived tuples of a large input cost ~10% and would free nothing.
    gc.disable()
    fmt = FORMATS[args.format]
    collapser = fmt.make_collapser(args)
    split = fmt.native_split_bytes if getattr(collapser, "native", False) else fmt.split_bytes
    retire_into(KEPT)  # FAST_EXIT: the collapser's caches are dropped at the exit, at once
    try:
        folded = collapse_path(collapser, args.file, split, getattr(args, "nthreads", 1))
    finally:
        retire_into(None)
    if not folded:
        reason = getattr(collapser, "empty_reason", lambda: None)()
        raise InputError(reason) if reason else nothing_found(args.file, fmt.records, fmt.expected)
    write_stdout(folded.to_bytes())
    return 0


def collapse_path(collapser: Collapser, path: str, split_bytes: int, threads: int) -> Folded:
    """Fold FILE; a large plain file (``split_bytes`` and more) on up to ``threads`` cores.
    A collapser that reads a file where it lies (the perf and DTrace C folders) is given
    the file mapped, up to MAP_MAX_BYTES, and its forked helpers fold their parts of the
    same map."""
    parts = min(threads, os.cpu_count() or 1) if split_bytes else 1
    if getattr(collapser, "reads_mapped", False):
        mapped = map_file(path, MAP_MAX_BYTES)
        if mapped is None:  # stdin, gzip, larger files: read in chunks, bounded
            return collapse_file(collapser, path)
        with mapped:
            if parts > 1 and len(mapped) >= split_bytes:
                return fold_parts(collapser, mapped, parts)
            collapser.feed(mapped)  # type: ignore[arg-type]  # reads_mapped: feed takes it
            return collapser.finish()
    size = plain_file_size(path) if parts > 1 else None
    if size is None or not split_bytes <= size <= SPLIT_MAX_BYTES:
        return collapse_file(collapser, path)
    return fold_parts(collapser, read_whole(path), parts)


def fold_parts(collapser: Collapser, data: bytes | mmap, parts: int) -> Folded:
    from flamed.collapse.parallel import fold_in_parts

    return fold_in_parts(collapser, data, parts)
