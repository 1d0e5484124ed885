"""What every sampling session shares: options, the resolve/sample/restart loop, backoff.

A session loops until ``stop()``: resolve the target; with nothing to sample,
state ``waiting`` and look again after a bucket; otherwise run the sampler
(``sample()``, one long-running perf or dtrace) until it is stopped, the target
set changes, or it fails. A failure (perf's, or an unexpected exception from
any step of a cycle) is counted under ``restarts["crash"]``, kept in
``last_error``, logged once, and retried after an exponential backoff (capped).
This is the one restart policy: the daemon runs a session and never restarts it
itself. The buckets being filled belong to the session (its ``BucketCutter``),
not to one sampler: a restart keeps what was read, and ``stop()`` hands out the
rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flamed.collapse.errors import FlamedError
from flamed.collector.base import Chunk, ChunkSink, SessionStatus, TargetSpec
from flamed.collector.buckets import BucketCutter, Collapser, Part
from flamed.collector.children import death_wrapper
from flamed.collector.targets import Resolution, Resolver

log = logging.getLogger("flamed.collector")

Outcome = Literal["stop", "targets", "rss", "stalled"]
"""Why a sampler ended: stopped, its target set changed, perf outgrew its memory cap,
or perf stopped giving output while its target ran (stuck or stopped)."""
GRACE = 3.0
"""Seconds past a bucket's end before it is handed out when no later sample closed it: perf,
pinged every second, delivered a single process's samples 1.8 s late (median; 3.5 s at most)
when read as they came; the daemon reads every half second, which adds up to 0.5 s."""

TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


@dataclass(frozen=True)
class SessionOptions:
    """How a session samples; every external path and the clock are here for tests to swap."""

    bucket_seconds: float = 10.0
    """Length of one chunk; buckets are aligned on the wall clock (multiples of this)."""
    perf_path: str = "perf"
    dtrace_path: str = "dtrace"
    bpftrace_path: str = "bpftrace"
    min_block_us: int = 1000
    """Off-CPU sessions: blocks shorter than this many microseconds are not counted."""
    tracefs: tuple[Path, ...] = TRACEFS
    """Where tracefs may be mounted (off-CPU sessions check for the sched_switch tracepoint)."""
    proc_root: Path = Path("/proc")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    systemctl_path: str | None = "systemctl"
    clock: Callable[[], float] = time.time
    grace: float = GRACE
    """A bucket no later sample has closed is handed out this many seconds after its end;
    a sample that comes after that is added to it as a late part (``samples_late``)."""
    stop_timeout: float = 10.0
    """After SIGINT, how long perf or dtrace may take to write its last data before SIGKILL."""
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    fail_fast: bool = False
    """Raise the first failure from ``run()`` instead of restarting (``flamed record``)."""
    event: str | None = None
    """perf event; None: ``cycles`` where the machine has a PMU, else ``cpu-clock``."""
    mmap_pages: int | None = None
    """perf's ring buffer per CPU in pages (``-m``, a power of two); None: 8 (32 KiB)."""
    perf_rss_limit: int = 512 << 20
    """perf is restarted (``restarts["rss"]``) when perf record's or perf script's resident
    memory passes this; 0: never."""
    stall_timeout: float | None = None
    """perf is killed and restarted (``restarts["stalled"]``) when it gave no output for
    this long while stopped or while its target ran; None: 3 buckets, at least 10 s."""
    child_wrapper: tuple[str, ...] = field(default_factory=death_wrapper)
    """Prefix of every child's command line that makes the kernel kill it when flamed dies
    (``setpriv --pdeathsig KILL --``; empty where setpriv is missing)."""
    # Interpreted and JIT-compiled code (issue 17); see README.md, "Python, Java, Node".
    perf_maps: bool = True
    """Name JIT frames from the target's ``/tmp/perf-PID.map`` read by flamed itself
    (``flamed.collector.perfmap``), whatever perf named them."""
    java_perfmap: bool = False
    """Ask the target's JVMs to write their perf map (as ``jcmd PID Compiler.perfmap``)
    when sampling starts and every few buckets (``flamed.collector.java``)."""
    jitdump: bool = False
    """Name JIT frames from the jitdump files the target's JITs write and map
    (``node --perf-prof``, CPython 3.13 ``-X perf_jit``), read by flamed itself."""
    python_view: bool = False
    """Fold with ``PerfOptions(python=True)``: CPython's ``py::`` frames as Python functions."""
    py_spy_path: str | None = None
    """The py-spy binary for the ``py-spy`` backend; None: beside this Python, else on PATH."""
    py_spy_native: bool = False
    """py-spy ``--native``: C frames of extensions between the Python ones."""

    @property
    def stall_seconds(self) -> float:
        if self.stall_timeout is not None:
            return self.stall_timeout
        return max(3 * self.bucket_seconds, 10.0)


class SamplingSession:
    """The loop shared by the perf and DTrace sessions; subclasses implement ``sample()``."""

    backend = ""
    profile = "cpu"
    """The profile type of the chunks it hands out (``flamed.collector.base.PROFILE_TYPES``)."""

    def __init__(self, spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink) -> None:
        self.spec = spec
        self.options = options
        self.on_chunk = on_chunk
        self.status = SessionStatus(backend=self.backend)
        self.resolver = Resolver(
            spec,
            proc_root=options.proc_root,
            cgroup_root=options.cgroup_root,
            systemctl_path=options.systemctl_path,
            exclude=(os.getpid(),),
        )
        self._stopping = asyncio.Event()
        self._backoff = options.backoff_initial
        self._logged_error: str | None = None
        self._started = False
        self.python_cpu_seconds = 0.0
        """CPU this process spent folding (collapser and bookkeeping), summed over chunks."""
        self.tool_cpu_seconds = 0.0
        """CPU the converter (``perf script``) spent, summed over chunks."""
        self.cutter = BucketCutter(
            options.bucket_seconds,
            offset=self.clock_offset(),
            grace=options.grace,
            new_collapser=self.new_collapser,
            emit=self._hand_out,
        )
        self._sampling_since: float | None = None
        """When the running sampler started (wall clock), None between samplers."""
        self._reading_cpu = 0.0
        """CPU seconds spent cutting and folding the stream, not yet handed out with a chunk."""

    # -- public -------------------------------------------------------------

    async def run(self) -> None:
        """Sample until ``stop()``. Only cancellation escapes (and, with ``fail_fast``, the
        first failure): any other error ends one cycle, is counted and backed off from."""
        try:
            while not self._stopping.is_set():
                await self._guarded_cycle()
        except asyncio.CancelledError:
            self.abort()  # cancelled (shutdown timeout): what was read is still handed out
            raise
        finally:
            await self._finish()
            self.status.state = "stopped"

    async def stop(self) -> None:
        """Ask ``run()`` to end: the sampler writes its last data, which is folded first."""
        self._stopping.set()

    # -- hooks ----------------------------------------------------------------

    async def start(self) -> None:
        """Before the first sampler starts."""

    async def finish(self) -> None:
        """After the last sampler ended: hand out every bucket held."""
        self.cutter.close_all()

    def abort(self) -> None:
        """``run()`` was cancelled (its sampler already killed); ``finish()`` still runs."""

    async def sample(self, resolution: Resolution) -> Outcome:
        raise NotImplementedError

    def new_collapser(self) -> Collapser:
        """A collapser for one bucket of this profiler's output."""
        raise NotImplementedError

    def stamp_now(self) -> float:
        """Now, on the clock the profiler stamps its samples with."""
        return self.options.clock()

    def clock_offset(self) -> float:
        """Wall-clock time minus the stamps' clock (0: the profiler stamps wall-clock time)."""
        return 0.0

    def tool_cpu(self) -> float:
        """CPU the converter spent since the last chunk (``perf script``), for the next one."""
        return 0.0

    # -- the loop -------------------------------------------------------------

    async def _guarded_cycle(self) -> None:
        started = time.monotonic()
        try:
            if not self._started:
                await self.start()
                self._started = True
            await self._cycle()
        except Exception as err:  # ProfilerError, or a bug: neither may end sampling for good
            await self._failed(err, time.monotonic() - started)

    async def _cycle(self) -> None:
        resolution = self.resolve()
        if resolution.empty:
            self.status.state = "waiting"
            self.status.pids = ()
            await self.sleep(self.options.bucket_seconds)
            return
        started = time.monotonic()
        self._sampling_since = self.options.clock()
        try:
            outcome = await self.sample(resolution)
        finally:
            self._sampling_since = None
        self._logged_error = None  # it ran and ended normally: the next failure is news
        if outcome != "stop" and not self._stopping.is_set():
            self.count("restarts", outcome)
        ran = time.monotonic() - started
        if outcome == "targets" and ran < self.options.bucket_seconds / 2:
            # Processes that come and go faster than perf starts (perf -p fails on a pid
            # that has just exited) must not make a tight restart loop: at most two a bucket.
            await self.sleep(self.options.bucket_seconds / 2 - ran)

    async def _finish(self) -> None:
        try:
            await self.finish()
        except Exception:  # what is left is lost; run() still ends as asked
            log.exception("target %s: folding the sampler's last data failed", self.spec.name)

    async def _failed(self, err: Exception, ran: float) -> None:
        expected = isinstance(err, FlamedError)
        self.status.error(str(err) if expected else f"{type(err).__name__}: {err}")
        if self.options.fail_fast:
            raise err
        self.status.state = "error"
        self.count("restarts", "crash")
        bucket = self.options.bucket_seconds
        if ran > max(bucket, self._backoff):
            self._backoff = self.options.backoff_initial
        if ran > max(3 * bucket, self._backoff):
            # It ran well until now: restart at once (at most one bucket lost); a sampler
            # that keeps failing soon after starting backs off.
            self._log_failure(err, "restarting now")
            return
        self._log_failure(err, f"restarting in {self._backoff:.3g} s")
        await self.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, self.options.backoff_max)

    def _log_failure(self, err: Exception, then: str) -> None:
        """A warning for a new error (a bug's with its traceback); the same error again
        (a full disk, ...) only at debug."""
        message = self.status.last_error
        new = message != self._logged_error
        self._logged_error = message
        level = logging.WARNING if new else logging.DEBUG
        trace = err if new and not isinstance(err, FlamedError) else None
        log.log(level, "target %s: %s (%s)", self.spec.name, message, then, exc_info=trace)

    def resolve(self) -> Resolution:
        return self.resolver.resolve()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until stopped, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def count(self, kind: Literal["restarts", "chunks_dropped"], reason: str) -> None:
        table = self.status.restarts if kind == "restarts" else self.status.chunks_dropped
        table[reason] = table.get(reason, 0) + 1

    async def tick(self, *aws: asyncio.Future[Any]) -> None:
        """Wait a tick (a quarter of a bucket, at most a second) or until one of ``aws`` is
        done; then hand out the buckets the clock has completed."""
        timeout = min(1.0, self.options.bucket_seconds / 4)
        await asyncio.wait(aws, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        self.cutter.advance(self.stamp_now())
        self._ran_whole_bucket()

    def _ran_whole_bucket(self) -> None:
        """Has the sampler run through a whole bucket? Then an earlier error is past, even
        for an idle target whose buckets hold no sample (and so are never handed out)."""
        if self._sampling_since is None:
            return
        size = self.options.bucket_seconds
        first = math.ceil(self._sampling_since / size) * size
        if self.options.clock() >= first + size:
            self.status.sampled(first)

    def timed(self, feed: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """``feed``, its CPU time added to the next chunk's."""

        def timed_feed(data: bytes) -> None:
            started = time.thread_time()
            feed(data)
            self._reading_cpu += time.thread_time() - started

        return timed_feed

    def _hand_out(self, part: Part, start: float, end: float) -> None:
        """A bucket the cutter completed (or a late part of one) as a chunk."""
        started = time.thread_time()
        folded = part.collapser.finish()
        python_cpu = self._reading_cpu + time.thread_time() - started
        self._reading_cpu = 0.0
        tool_cpu = self.tool_cpu()
        samples = int(folded.total())
        if part.late:
            self.status.samples_late += samples
        chunk = Chunk(
            target=self.spec.name,
            start=start,
            end=end,
            folded=folded,
            samples=samples,
            bytes_folded=part.collapser.bytes_fed,
            cpu_seconds=python_cpu + tool_cpu,
            format=self.backend,
            profile=self.profile,
        )
        self.emit(chunk, python_cpu, tool_cpu)

    def emit(self, chunk: Chunk, python_cpu: float, tool_cpu: float) -> None:
        self.python_cpu_seconds += python_cpu
        self.tool_cpu_seconds += tool_cpu
        self.status.sampled(chunk.start)
        try:
            self.on_chunk(chunk)
        except Exception:  # the sink's bug must not stop sampling
            log.exception("target %s: the chunk sink failed", self.spec.name)
