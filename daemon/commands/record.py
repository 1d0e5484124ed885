"""``flamed record TARGET [-F HZ] [-d SECONDS] [-o OUT]``: a one-shot profile.

It runs the daemon's own session code for one target, for ``-d`` seconds or
until Ctrl-C (which stops early and still writes the output), merges the
chunks and writes them: ``.svg`` through the renderer, ``.folded``, ``.txt`` or ``-``
(stdout) as folded text; any other extension is refused before recording. With no
sample at all it still writes the output and exits 2, saying so.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from flamed.collapse.errors import InputError, ProfilerError, UsageError
from flamed.collapse.folded import Folded
from flamed.collector.base import Chunk, TargetSpec
from flamed.daemon.commands.common import EXIT_NO_SAMPLES, write_atomic, write_stdout
from flamed.daemon.commands.declaration import Declaration

NAME = "record"
HELP = "profile a process, a service or the whole machine once and write a flame graph"
DESCRIPTION = """\
Profile one target with perf (Linux) or DTrace (macOS) for -d SECONDS or until
Ctrl-C (with -p, also until those processes have exited), then write the
profile: OUT.svg is an interactive flame graph, OUT.folded or OUT.txt (or - for
stdout, the default) folded stacks. With no sample at all the exit status is 2.
The target is one of: -p PID[,PID...], --process REGEX
(command name), --cmdline REGEX (full command line), --unit UNIT (a systemd
unit's cgroup), -a (the whole machine). A process target that restarts is
followed. Needs root, CAP_PERFMON, or a low kernel.perf_event_paranoid.
With --off-cpu (Linux, as root, with bpftrace and tracefs) it records where the
threads were blocked instead: microseconds off CPU per stack, counted in the
kernel, blocks shorter than --min-block left out; the graph counts "us".
With --hot-cold it records both at once and draws them in one graph, CPU samples
turned to microseconds (1e6 / HZ each) in warm colours beside the time blocked
in blue (off-CPU frames marked _[o] in folded text).
"""


def add_arguments(parser: Declaration) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("-p", "--pid", metavar="PID[,PID...]", help="these process ids")
    target.add_argument("--process", metavar="REGEX", help="processes whose name matches")
    target.add_argument("--cmdline", metavar="REGEX", help="processes whose command line matches")
    target.add_argument("--unit", metavar="UNIT", help="a systemd unit (its cgroup)")
    target.add_argument("-a", "--all", action="store_true", help="the whole machine")
    add = parser.add_argument
    add("-F", "--frequency", type=int, default=99, metavar="HZ", help="samples per second (99)")
    add("-d", "--duration", type=float, metavar="SECONDS", help="stop after this long (Ctrl-C)")
    add("--call-graph", choices=("fp", "dwarf", "lbr"), default="fp", help="stack walking (fp)")
    add(
        "-o",
        "--output",
        default="-",
        metavar="OUT",
        help="OUT.svg, OUT.folded, OUT.txt or - (stdout)",
    )
    add(
        "--backend",
        choices=("auto", "perf", "dtrace", "py-spy"),
        default="auto",
        help="sampler (auto); py-spy: Python functions of CPython processes "
        "(pip install 'flamed[python]')",
    )
    add("--perf", metavar="PATH", help="the perf binary (default: perf on PATH)")
    add("--dtrace", metavar="PATH", help="the dtrace binary (default: dtrace on PATH)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--off-cpu", action="store_true", help="record time blocked (off CPU), not CPU samples"
    )
    kind.add_argument(
        "--hot-cold", action="store_true", help="record CPU samples and time blocked, in one graph"
    )
    add("--min-block", default="1ms", metavar="DURATION", help="shortest block counted (1ms)")
    add("--bpftrace", metavar="PATH", help="the bpftrace binary (default: bpftrace on PATH)")


OUTPUTS = {".svg": "svg", ".folded": "folded", ".txt": "folded"}
"""What each ``-o`` extension writes (any case); ``-`` writes folded text to stdout."""


def output_kind(path: str) -> str:
    if path == "-":
        return "folded"
    kind = OUTPUTS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise UsageError(
            f"-o {path}: unknown extension; give OUT.svg (a flame graph), OUT.folded or "
            "OUT.txt (folded stacks), or - (folded stacks on stdout)"
        )
    return kind


def parse_pids(text: str) -> tuple[int, ...]:
    try:
        pids = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise UsageError(f"-p wants process ids separated by commas, not {text!r}") from err
    if not pids or min(pids) <= 0:
        raise UsageError(f"-p wants positive process ids, not {text!r}")
    return pids


def target_spec(args: argparse.Namespace) -> TargetSpec:
    if args.frequency <= 0:
        raise UsageError("-F must be a positive number of samples per second")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("-d must be a positive number of seconds")
    return TargetSpec(
        name="record",
        pids=parse_pids(args.pid) if args.pid else (),
        process=args.process,
        cmdline=args.cmdline,
        unit=args.unit,
        all=args.all,
        frequency=args.frequency,
        call_graph=args.call_graph,
        backend=args.backend,
    )


def check_target(spec: TargetSpec) -> None:
    """Fail early, in one line, when the target matches nothing now."""
    if spec.all or (spec.backend == "dtrace" or sys.platform == "darwin"):
        return
    from flamed.collector.targets import Resolver

    if Resolver(spec).resolve().empty:
        what = "is running" if spec.unit is None else "is active (no cgroup found)"
        raise InputError(f"no process with {spec.describe()} {what}")


def check_frequency(spec: TargetSpec) -> None:
    """Say what perf will do with an -F above the kernel's limit (it throttles to it)."""
    if spec.backend in ("dtrace", "py-spy") or sys.platform == "darwin":
        return
    from flamed.collector.perf import max_sample_rate

    limit = max_sample_rate()
    if limit is not None and spec.frequency > limit:
        logging.getLogger("flamed.record").warning(
            "-F %d is above kernel.perf_event_max_sample_rate (%d Hz): perf will sample at "
            "%d Hz at most (raise it with sysctl kernel.perf_event_max_sample_rate=N)",
            spec.frequency, limit, limit,
        )  # fmt: skip


def min_block_us(text: str) -> int:
    from flamed.daemon.timerange import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as err:
        raise UsageError(f"--min-block: {err}") from None
    if not 1e-6 <= seconds <= 10.0:
        raise UsageError("--min-block must be from 1us to 10s")
    return round(seconds * 1e6)


def profiles(args: argparse.Namespace) -> tuple[str, ...]:
    """The profile types recorded: ``cpu``, ``offcpu``, or both for --hot-cold."""
    if args.hot_cold:
        return ("cpu", "offcpu")
    return ("offcpu",) if args.off_cpu else ("cpu",)


def write_output(folded: Folded, path: str, title: str, profile: str = "cpu") -> None:
    kind = output_kind(path)
    data = render_svg(folded, title, profile) if kind == "svg" else folded.to_bytes()
    if path == "-":
        write_stdout(data)
    else:
        write_atomic(path, data)


def render_svg(folded: Folded, title: str, profile: str = "cpu") -> bytes:
    """``profile``: ``cpu``, ``offcpu`` (blue, in us) or ``hotcold`` (both, in us)."""
    from flamed.render import RenderOptions, render_flamegraph

    options = RenderOptions(title=title)
    if profile != "cpu":
        colors = "io" if profile == "offcpu" else "hotcold"
        options = RenderOptions(title=title, count_name="us", colors=colors)
    return render_flamegraph(folded, options).encode("utf-8", "surrogateescape")


async def record(args: argparse.Namespace, spec: TargetSpec) -> dict[str, Folded]:
    """Each profile type's samples (``profiles(args)``), recorded at once."""
    import asyncio
    import contextlib
    import signal

    from flamed.collector.sessions import create_session

    merged = {profile: Folded() for profile in profiles(args)}
    duration = args.duration

    def on_chunk(chunk: Chunk) -> None:
        merged[chunk.profile].update(chunk.folded)

    sessions = [
        create_session(
            spec,
            bucket_seconds=min(duration, 10.0) if duration else 10.0,
            on_chunk=on_chunk,
            perf_path=args.perf,
            dtrace_path=args.dtrace,
            fail_fast=True,
            profile=profile,
            bpftrace_path=args.bpftrace,
            min_block_us=min_block_us(args.min_block),
        )
        for profile in merged
    ]
    session = sessions[0]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)

    async def processes_gone() -> None:
        """With -p, as with perf: the recording ends when every process has exited."""
        while not (spec.pids and session.status.state == "waiting"):
            await asyncio.sleep(0.2)

    runners = [asyncio.create_task(one.run()) for one in sessions]
    interrupted = asyncio.create_task(done.wait())
    gone = asyncio.create_task(processes_gone())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                waited = {*runners, interrupted, gone}
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    finally:
        interrupted.cancel()
        gone.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for one in sessions:
            await one.stop()
        ended = await asyncio.gather(*runners, return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, BaseException):
            raise outcome  # the first session that failed says why
    return merged


def combined(found: dict[str, Folded], spec: TargetSpec) -> tuple[str, Folded, str]:
    """What was recorded as one profile: its type, its stacks, and what it shows."""
    from flamed.collapse.hotcold import hot_cold

    if len(found) == 2:
        both = hot_cold(found["cpu"], found["offcpu"], 1e6 / spec.frequency)
        return "hotcold", both, f"CPU and off-CPU time of {spec.describe()}"
    if "offcpu" in found:
        return "offcpu", found["offcpu"], f"off-CPU time of {spec.describe()}"
    return "cpu", found["cpu"], spec.describe()


def run(args: argparse.Namespace) -> int:
    import asyncio

    spec = target_spec(args)
    output_kind(args.output)
    min_block_us(args.min_block)
    check_target(spec)
    if not args.off_cpu:
        check_frequency(spec)
    try:
        found = asyncio.run(record(args, spec))
    except OSError as err:
        raise ProfilerError(str(err)) from err
    profile, folded, what = combined(found, spec)
    write_output(folded, args.output, f"flamed record: {what}", profile)
    if not folded:
        during = f" in {args.duration:g} s" if args.duration else ""
        why = {
            "offcpu": f"no block of {args.min_block} or more meanwhile",
            "cpu": "it ran on no CPU meanwhile (idle?)",
            "hotcold": f"it ran on no CPU and had no block of {args.min_block} or more",
        }[profile]
        print(
            f"flamed record: no samples of {spec.describe()}{during}: {why}, "
            "or it is not the process you meant",
            file=sys.stderr,
        )
        return EXIT_NO_SAMPLES
    return 0
