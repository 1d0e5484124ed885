"""Samplers that print what they counted every so often: one long-running child whose
stdout is a series of dumps, each followed by a marker line with the time it was cut.

DTrace (CPU samples on macOS) and bpftrace (off-CPU time on Linux) both count in
the kernel and print and clear their map every ``period``. ``Dumps`` cuts the
child's stdout at the markers and gives each dump to the bucket of its middle
(``BucketCutter``: buckets aligned on the wall clock, complete when a later dump
comes or the clock passed them). ``DumpSession`` runs the child: state, stderr
tail, the tick that closes buckets, re-resolving a dynamic target once a bucket,
and the stop (SIGINT; what the child prints then goes to the bucket of the moment).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping

from flamed.collapse.errors import ProfilerError
from flamed.collector.buckets import BucketCutter
from flamed.collector.children import spawn, stop_group
from flamed.collector.pipeline import read_lines
from flamed.collector.runner import Outcome, SamplingSession
from flamed.collector.targets import Resolution

MAX_DUMP = 16 << 20
"""A dump longer than this without its marker is folded into the bucket of the moment."""
STDERR_LINES = 20


def dump_period(bucket_seconds: float) -> int:
    """Milliseconds between dumps: a second, or a quarter of a shorter bucket (at least 0.1 s)."""
    return max(100, min(1000, round(bucket_seconds * 250)))


class Dumps:
    """A child's stdout cut at ``marker`` lines (the marker, then the time in ns, on the
    child's clock); each dump goes to the bucket of its middle."""

    def __init__(
        self,
        cutter: BucketCutter,
        period: float,
        clock: Callable[[], float],
        marker: bytes,
        keep_tail: bool = True,
    ) -> None:
        self.cutter = cutter
        self.keep_tail = keep_tail
        """Fold what comes after the last marker (the child's exit dump) or drop it."""
        self.period = period
        self.clock = clock
        self.marker = marker
        self.count = 0
        """Markers read so far."""
        self._pending = b""

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data
        marker = self.marker
        while (at := buffer.find(marker)) >= 0:
            end = buffer.find(b"\n", at + len(marker))
            if end < 0:
                break
            stamp = buffer[at + len(marker) : end].strip()
            middle = int(stamp) / 1e9 - self.period / 2 if stamp.isdigit() else None
            self._add(middle, buffer[: at + 1])
            self.count += 1
            buffer = buffer[end + 1 :]
        if len(buffer) > MAX_DUMP:
            keep = len(buffer) - len(marker)
            self._add(None, buffer[:keep])
            buffer = buffer[keep:]
        self._pending = buffer

    def finish(self) -> None:
        """The child ended: what it printed after the last marker (its exit dump)."""
        if self._pending and self.keep_tail:
            self._add(None, self._pending)
            self._pending = b""

    def _add(self, when: float | None, dump: bytes) -> None:
        self.cutter.add(self.cutter.index(when, self.clock()), dump)


class DumpSession(SamplingSession):
    """A session whose sampler is one child printing dumps (``sample()`` starts it)."""

    tool = ""
    """The child's name in messages."""
    dumps: Dumps | None = None
    """The running child's dumps (``dumps.count``: how many it printed)."""

    async def start_child(
        self, argv: list[str], missing: str, env: Mapping[str, str] | None = None
    ) -> asyncio.subprocess.Process:
        """The child, stdout piped, in ``env`` (None: ours); ``missing`` is the one-line
        error when it is not there."""
        if shutil.which(argv[0]) is None:  # behind the wrapper, a missing one is no OSError
            raise ProfilerError(missing)
        try:
            return await spawn(
                argv, stdout=asyncio.subprocess.PIPE, wrapper=self.options.child_wrapper, env=env
            )
        except FileNotFoundError as err:
            raise ProfilerError(missing) from err
        except OSError as err:
            raise ProfilerError(f"cannot run {argv[0]}: {err.strerror or err}") from err

    async def supervise(
        self, proc: asyncio.subprocess.Process, dumps: Dumps, resolution: Resolution
    ) -> Outcome:
        self.status.state = "running"
        self.status.pids = resolution.pids
        self.dumps = dumps
        tail: deque[str] = deque(maxlen=STDERR_LINES)
        reader = asyncio.create_task(read_output(proc, self.timed(dumps.feed)))
        what = f"target {self.spec.name}: {self.tool}"
        errors = asyncio.create_task(read_lines(proc, tail, what))
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        outcome: Outcome | None = None
        try:
            outcome = await self._watch(exited, stopping, resolution)
            if outcome is not None:
                await self.before_stop(dumps, exited)
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
        raise self.failure(proc.returncode, list(tail))

    async def before_stop(self, dumps: Dumps, exited: asyncio.Task[int]) -> None:
        """The child is about to get SIGINT (it still runs)."""

    def failure(self, code: int | None, stderr: list[str]) -> ProfilerError:
        """The one-line error for a child that ended by itself."""
        raise NotImplementedError

    async def _watch(
        self, exited: asyncio.Task[int], stopping: asyncio.Task[bool], resolution: Resolution
    ) -> Outcome | None:
        """Until stopped, the child exits (None) or the target set changes; buckets closed by
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
                self.status.pids = now.pids


async def read_output(proc: asyncio.subprocess.Process, sink: Callable[[bytes], None]) -> None:
    stream = proc.stdout
    assert stream is not None
    while data := await stream.read(1 << 16):
        sink(data)
