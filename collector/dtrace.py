"""The DTrace session (macOS): one long-running ``dtrace`` printing an aggregation per bucket.

The D program counts user stacks at HZ and, every bucket, prints and clears
the aggregation and then a marker line of its own; the session splits
dtrace's stdout at the markers and streams each dump through the DTrace
collapser into a chunk. On stop, dtrace gets SIGINT and prints what it holds
(DTrace prints non-empty aggregations at exit): that tail is the last chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections import deque

from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions
from flamed.collapse.errors import ProfilerError, UsageError
from flamed.collector.base import Chunk, ChunkSink, TargetSpec
from flamed.collector.children import spawn, stop_group
from flamed.collector.perf import explain_failure
from flamed.collector.runner import Outcome, SamplingSession, SessionOptions
from flamed.collector.targets import Resolution

MARKER = b"\n==flamed-dump-end==\n"
"""Printed by the D program after each dump; never passed to the collapser."""
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


def d_program(frequency: int, bucket_seconds: float, condition: str) -> str:
    seconds = max(1, round(bucket_seconds))
    guard = f" /{condition}/" if condition else ""
    marker = MARKER.decode().replace("\n", "\\n")
    return (
        f"profile-{frequency}{guard} {{ @[ustack()] = count(); }} "
        f'tick-{seconds}s {{ printa(@); trunc(@); printf("{marker}"); }}'
    )


def dtrace_argv(dtrace_path: str, spec: TargetSpec, bucket: float, condition: str) -> list[str]:
    program = d_program(spec.frequency, bucket, condition)
    return [dtrace_path, "-x", "ustackframes=100", "-n", program]


class _Dump:
    """The dump being read: a collapser and the CPU time this process spent on it."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.collapser = DTraceCollapser(DTraceOptions())
        self.cpu = 0.0

    def feed(self, data: bytes) -> None:
        if data:
            started = time.thread_time()
            self.collapser.feed(data)
            self.cpu += time.thread_time() - started


class DTraceSession(SamplingSession):
    """Samples one target with ``dtrace`` and folds each printed aggregation into a chunk."""

    backend = "dtrace"

    def __init__(self, spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink) -> None:
        check_spec(spec)
        super().__init__(spec, options, on_chunk)
        self.status.event = f"profile-{spec.frequency}"

    def resolve(self) -> Resolution:
        if self.spec.all or execname(self.spec) is not None:
            return Resolution("all")  # dtrace itself follows the name
        return super().resolve()

    async def sample(self, resolution: Resolution) -> Outcome:
        condition = predicate(self.spec, resolution)
        argv = dtrace_argv(
            self.options.dtrace_path, self.spec, self.options.bucket_seconds, condition
        )
        try:
            proc = await spawn(argv, stdout=asyncio.subprocess.PIPE)
        except FileNotFoundError as err:
            raise ProfilerError(
                f"dtrace not found ({argv[0]}): it ships with macOS (run as root; "
                "System Integrity Protection may need to allow dtrace)"
            ) from err
        except OSError as err:
            raise ProfilerError(f"cannot run {argv[0]}: {err.strerror or err}") from err
        return await self._supervise(proc, resolution)

    async def _supervise(self, proc: asyncio.subprocess.Process, resolution: Resolution) -> Outcome:
        self.status.state = "running"
        self.status.pids = resolution.pids
        tail: deque[str] = deque(maxlen=STDERR_LINES)
        reader = asyncio.create_task(self._read_stdout(proc))
        errors = asyncio.create_task(_read_lines(proc, tail))
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
        if outcome is not None or self._stopping.is_set():
            return outcome or "stop"
        if self.resolver.dynamic and self.resolve().sampling_key() != resolution.sampling_key():
            return "targets"
        raise explain_failure("dtrace", proc.returncode, "\n".join(tail), self.options.proc_root)

    async def _watch(
        self, exited: asyncio.Task[int], stopping: asyncio.Task[bool], resolution: Resolution
    ) -> Outcome | None:
        while True:
            await asyncio.wait(
                {exited, stopping},
                timeout=self.options.bucket_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stopping.done():
                return "stop"
            if exited.done():
                return None
            if self.resolver.dynamic:
                now = self.resolve()
                if now.sampling_key() != resolution.sampling_key():
                    return "targets"

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        """Split dtrace's output at the markers; each dump streams into its own collapser."""
        stream = proc.stdout
        assert stream is not None
        dump = _Dump(self.options.clock())
        keep = len(MARKER) - 1
        pending = b""
        while data := await stream.read(1 << 16):
            buffer = pending + data
            while (index := buffer.find(MARKER)) >= 0:
                dump.feed(buffer[:index])
                self._emit(dump)
                dump = _Dump(self.options.clock())
                buffer = buffer[index + len(MARKER) :]
            cut = max(0, len(buffer) - keep)
            dump.feed(buffer[:cut])
            pending = buffer[cut:]
        dump.feed(pending)
        if dump.collapser.bytes_fed:
            self._emit(dump)

    def _emit(self, dump: _Dump) -> None:
        started = time.thread_time()
        folded = dump.collapser.finish()
        dump.cpu += time.thread_time() - started
        total = folded.total()
        chunk = Chunk(
            target=self.spec.name,
            start=dump.start,
            end=self.options.clock(),
            folded=folded,
            samples=int(total),
            bytes_folded=dump.collapser.bytes_fed,
            cpu_seconds=dump.cpu,
            format="dtrace",
        )
        self.emit(chunk, dump.cpu, 0.0)


async def _read_lines(proc: asyncio.subprocess.Process, tail: deque[str]) -> None:
    stream = proc.stderr
    assert stream is not None
    with contextlib.suppress(ValueError):
        async for line in stream:
            text = line.decode("utf-8", "replace").strip()
            if text:
                tail.append(text[:500])
    # a line over the reader's limit ends the tail; drain the rest
    while await stream.read(1 << 16):
        pass
