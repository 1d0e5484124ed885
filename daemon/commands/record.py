"""``flamed record TARGET [-F HZ] [-d SECONDS] [-o OUT]``: a one-shot profile.

It runs the daemon's own session code for one target, for ``-d`` seconds or
until Ctrl-C (which stops early and still writes the output), merges the
chunks and writes them: ``.svg`` through the renderer, anything else (``.folded``,
``-`` for stdout) as folded text.
"""

from __future__ import annotations

import argparse
import sys

from flamed.collapse.errors import InputError, ProfilerError, UsageError
from flamed.collapse.folded import Folded
from flamed.collector.base import Chunk, TargetSpec
from flamed.daemon.commands.common import write_atomic, write_stdout

NAME = "record"
HELP = "profile a process, a service or the whole machine once and write a flame graph"
DESCRIPTION = """\
Profile one target with perf (Linux) or DTrace (macOS) for -d SECONDS or until
Ctrl-C (with -p, also until those processes have exited), then write the
profile: OUT.svg is an interactive flame graph, OUT.folded (or - for stdout, the
default) folded stacks. The target is one of: -p PID[,PID...], --process REGEX
(command name), --cmdline REGEX (full command line), --unit UNIT (a systemd
unit's cgroup), -a (the whole machine). A process target that restarts is
followed. Needs root, CAP_PERFMON, or a low kernel.perf_event_paranoid.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    add("-o", "--output", default="-", metavar="OUT", help="OUT.svg, OUT.folded or - (stdout)")
    add("--backend", choices=("auto", "perf", "dtrace"), default="auto", help="sampler (auto)")
    add("--perf", metavar="PATH", help="the perf binary (default: perf on PATH)")
    add("--dtrace", metavar="PATH", help="the dtrace binary (default: dtrace on PATH)")


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


def describe(spec: TargetSpec) -> str:
    if spec.all:
        return "the whole machine"
    if spec.pids:
        return "process id " + ",".join(map(str, spec.pids))
    if spec.process is not None:
        return f"process name {spec.process!r}"
    if spec.cmdline is not None:
        return f"command line {spec.cmdline!r}"
    return f"unit {spec.unit!r}"


def check_target(spec: TargetSpec) -> None:
    """Fail early, in one line, when the target matches nothing now."""
    if spec.all or (spec.backend == "dtrace" or sys.platform == "darwin"):
        return
    from flamed.collector.targets import Resolver

    if Resolver(spec).resolve().empty:
        what = "is running" if spec.unit is None else "is active (no cgroup found)"
        raise InputError(f"no process with {describe(spec)} {what}")


def write_output(folded: Folded, path: str, title: str) -> None:
    data = render_svg(folded, title) if path.endswith(".svg") else folded.to_bytes()
    if path == "-":
        write_stdout(data)
    else:
        write_atomic(path, data)


def render_svg(folded: Folded, title: str) -> bytes:
    from flamed.render import RenderOptions, render_flamegraph

    return render_flamegraph(folded, RenderOptions(title=title)).encode("utf-8", "surrogateescape")


async def record(args: argparse.Namespace, spec: TargetSpec) -> Folded:
    import asyncio
    import contextlib
    import signal

    from flamed.collector.sessions import create_session

    merged = Folded()
    duration = args.duration

    def on_chunk(chunk: Chunk) -> None:
        merged.update(chunk.folded)

    session = create_session(
        spec,
        bucket_seconds=min(duration, 10.0) if duration else 10.0,
        on_chunk=on_chunk,
        perf_path=args.perf,
        dtrace_path=args.dtrace,
        fail_fast=True,
    )
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)

    async def processes_gone() -> None:
        """With -p, as with perf: the recording ends when every process has exited."""
        while not (spec.pids and session.status.state == "waiting"):
            await asyncio.sleep(0.2)

    runner = asyncio.create_task(session.run())
    interrupted = asyncio.create_task(done.wait())
    gone = asyncio.create_task(processes_gone())
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await asyncio.wait({runner, interrupted, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        interrupted.cancel()
        gone.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await session.stop()
        await runner
    return merged


def run(args: argparse.Namespace) -> int:
    import asyncio

    spec = target_spec(args)
    check_target(spec)
    try:
        folded = asyncio.run(record(args, spec))
    except OSError as err:
        raise ProfilerError(str(err)) from err
    if not folded:
        print("flamed record: no samples were taken", file=sys.stderr)
    write_output(folded, args.output, f"flamed record: {describe(spec)}")
    return 0
