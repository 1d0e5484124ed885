"""The DTrace session (macOS): one long-running ``dtrace`` printing its aggregation often.

The D program counts user stacks at HZ and, every ``dump_period`` (at most a
second, a quarter of a bucket for short buckets), prints and clears the
aggregation and then a marker line of its own with the time (``walltimestamp``).
The session cuts dtrace's stdout at the markers and gives each dump to the
bucket of its middle, with the same ``BucketCutter`` as perf: buckets aligned
on the wall clock, complete when a later dump comes or the clock passed them.
On stop, dtrace gets SIGINT and prints what it holds (DTrace prints non-empty
aggregations at exit): that tail goes to the bucket of the moment it came.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import deque
from collections.abc import Callable

from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions
from flamed.collapse.errors import ProfilerError, UsageError
from flamed.collector.base import ChunkSink, TargetSpec
from flamed.collector.buckets import BucketCutter
from flamed.collector.children import spawn, stop_group
from flamed.collector.perf import explain_failure
from flamed.collector.pipeline import read_lines
from flamed.collector.runner import Outcome, SamplingSession, SessionOptions
from flamed.collector.targets import Resolution

MARKER = b"\n==flamed-dump-end== "
"""Printed by the D program after each dump, before the time in ns; never folded."""
MAX_DUMP = 16 << 20
"""A dump longer than this without its marker is folded into the bucket of the moment."""
PLAIN_NAME = re.compile(r"\^?([\w.+-]+)\$?", re.ASCII)
STDERR_LINES = 20


def execname(spec: TargetSpec) -> str | None:
    """The plain process name a ``process`` pattern means (``nginx``, ``^nginx$``), or None."""
    if spec.process is None:
        return None
    found = PLAIN_NAME.fullmatch(spec.process)
    return found.group(1) if found else None


def check_spec(spec: TargetSpec) -> None:
    """DTrace samples pids, a plain process name, or everything."""
    if spec.pids or spec.all or execname(spec) is not None:
        return
    raise UsageError(
        f"target {spec.name!r}: the dtrace backend samples pids, a plain process name "
        "(execname) or the whole machine; not cmdline, unit or regular expressions"
    )


def predicate(spec: TargetSpec, resolution: Resolution) -> str:
    name = execname(spec)
    if name is not None:
        return f'execname == "{name}"'
    if resolution.mode == "pids":
        return " || ".join(f"pid == {pid}" for pid in resolution.pids)
    return ""


def dump_period(bucket_seconds: float) -> int:
    """Milliseconds between dumps: a second, or a quarter of a shorter bucket (at least 0.1 s)."""
    return max(100, min(1000, round(bucket_seconds * 250)))


def d_program(frequency: int, period_ms: int, condition: str) -> str:
    guard = f" /{condition}/" if condition else ""
    marker = MARKER.decode().replace("\n", "\\n")
    return (
        f"profile-{frequency}{guard} {{ @[ustack()] = count(); }} "
        f'tick-{period_ms}ms {{ printa(@); trunc(@); printf("{marker}%d\\n", walltimestamp); }}'
    )


def dtrace_argv(dtrace_path: str, spec: TargetSpec, period_ms: int, condition: str) -> list[str]:
    program = d_program(spec.frequency, period_ms, condition)
    return [dtrace_path, "-x", "ustackframes=100", "-n", program]


class Dumps:
    """dtrace's stdout cut at the markers; each dump goes to the bucket of its middle."""

    def __init__(self, cutter: BucketCutter, period: float, clock: Callable[[], float]) -> None:
        self.cutter = cutter
        self.period = period
        self.clock = clock
        self._pending = b""

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data
        while (at := buffer.find(MARKER)) >= 0:
            end = buffer.find(b"\n", at + len(MARKER))
            if end < 0:
                break
            stamp = buffer[at + len(MARKER) : end].strip()
            middle = int(stamp) / 1e9 - self.period / 2 if stamp.isdigit() else None
            self._add(middle, buffer[: at + 1])
            buffer = buffer[end + 1 :]
        if len(buffer) > MAX_DUMP:
            keep = len(buffer) - len(MARKER)
            self._add(None, buffer[:keep])
            buffer = buffer[keep:]
        self._pending = buffer

    def finish(self) -> None:
        """dtrace ended: what it printed after the last marker (its exit dump)."""
        if self._pending:
            self._add(None, self._pending)
            self._pending = b""

    def _add(self, when: float | None, dump: bytes) -> None:
        self.cutter.add(self.cutter.index(when, self.clock()), dump)


class DTraceSession(SamplingSession):
    """Samples one target with ``dtrace`` and folds its dumps into a chunk per bucket."""

    backend = "dtrace"

    def __init__(self, spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink) -> None:
        check_spec(spec)
        super().__init__(spec, options, on_chunk)
        self.status.event = f"profile-{spec.frequency}"

    def resolve(self) -> Resolution:
        if self.spec.all or execname(self.spec) is not None:
            return Resolution("all")  # dtrace itself follows the name
        return super().resolve()

    def new_collapser(self) -> DTraceCollapser:
        return DTraceCollapser(DTraceOptions())

    async def sample(self, resolution: Resolution) -> Outcome:
        condition = predicate(self.spec, resolution)
        period = dump_period(self.options.bucket_seconds)
        argv = dtrace_argv(self.options.dtrace_path, self.spec, period, condition)
        try:
            proc = await spawn(argv, stdout=asyncio.subprocess.PIPE)
        except FileNotFoundError as err:
            raise ProfilerError(
                f"dtrace not found ({argv[0]}): it ships with macOS (run as root; "
                "System Integrity Protection may need to allow dtrace)"
            ) from err
        except OSError as err:
            raise ProfilerError(f"cannot run {argv[0]}: {err.strerror or err}") from err
        return await self._supervise(proc, Dumps(self.cutter, period / 1000, self.stamp_now),
                                     resolution)  # fmt: skip

    async def _supervise(
        self, proc: asyncio.subprocess.Process, dumps: Dumps, resolution: Resolution
    ) -> Outcome:
        self.status.state = "running"
        self.status.pids = resolution.pids
        tail: deque[str] = deque(maxlen=STDERR_LINES)
        reader = asyncio.create_task(read_output(proc, self.timed(dumps.feed)))
        errors = asyncio.create_task(read_lines(proc, tail, f"target {self.spec.name}: dtrace"))
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        outcome: Outcome | None = None
        try:
            outcome = await self._watch(exited, stopping, resolution)
        finally:
            stopping.cancel()
            if proc.returncode is None:
                await stop_group(proc, signal.SIGINT, self.options.stop_timeout)
            await asyncio.gather(exited, reader, errors)
        dumps.finish()
        if outcome is not None or self._stopping.is_set():
            return outcome or "stop"
        if self.resolver.dynamic and self.resolve().sampling_key() != resolution.sampling_key():
            return "targets"
        raise explain_failure("dtrace", proc.returncode, "\n".join(tail), self.options.proc_root)

    async def _watch(
        self, exited: asyncio.Task[int], stopping: asyncio.Task[bool], resolution: Resolution
    ) -> Outcome | None:
        """Until stopped, dtrace exits (None) or the target set changes; buckets closed by
        the clock every tick, the target re-resolved once a bucket."""
        bucket = self.options.bucket_seconds
        next_check = time.monotonic() + bucket
        while True:
            await self.tick(exited, stopping)
            if stopping.done():
                return "stop"
            if exited.done():
                return None
            if self.resolver.dynamic and time.monotonic() >= next_check:
                next_check = time.monotonic() + bucket
                now = self.resolve()
                if now.sampling_key() != resolution.sampling_key():
                    return "targets"


async def read_output(proc: asyncio.subprocess.Process, sink: Callable[[bytes], None]) -> None:
    stream = proc.stdout
    assert stream is not None
    while data := await stream.read(1 << 16):
        sink(data)
