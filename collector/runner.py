"""What every sampling session shares: options, the resolve/sample/restart loop, backoff.

A session loops until ``stop()``: resolve the target; with nothing to sample,
state ``waiting`` and look again after a bucket; otherwise run the sampler
(``sample()``, one long-running perf or dtrace) until it is stopped, the target
set changes, or it fails. A failure (perf's, or an unexpected exception from
any step of a cycle) is counted under ``restarts["crash"]``, kept in
``last_error``, logged once, and retried after an exponential backoff (capped);
chunks already folded are never lost. This is the one restart policy: the
daemon runs a session and never restarts it itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flamed.collapse.errors import FlamedError
from flamed.collector.base import Chunk, ChunkSink, SessionStatus, TargetSpec
from flamed.collector.children import death_wrapper
from flamed.collector.targets import Resolution, Resolver

log = logging.getLogger("flamed.collector")

Outcome = Literal["stop", "targets", "rss", "stalled", "spool_full"]
"""Why a sampler ended: stopped, its target set changed, perf outgrew its memory cap,
perf stopped rotating its file (stuck or stopped), or its file reached the spool bound."""


@dataclass(frozen=True)
class SessionOptions:
    """How a session samples; every external path and the clock are here for tests to swap."""

    bucket_seconds: float = 10.0
    """Length of one chunk (DTrace rounds it to whole seconds, at least 1)."""
    spool_dir: Path = Path("/var/lib/flamed/spool")
    """Where perf writes its rotated files; one subfolder per target."""
    perf_path: str = "perf"
    dtrace_path: str = "dtrace"
    proc_root: Path = Path("/proc")
    cgroup_root: Path = Path("/sys/fs/cgroup")
    systemctl_path: str | None = "systemctl"
    clock: Callable[[], float] = time.time
    max_backlog: int = 8
    """Rotated files waiting to be folded beyond this many: the oldest is dropped and counted."""
    script_timeout: float = 120.0
    """``perf script`` on one file is killed (with its group) after this many seconds."""
    stop_timeout: float = 10.0
    """After SIGINT, how long perf or dtrace may take to write its last data before SIGKILL."""
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    fail_fast: bool = False
    """Raise the first failure from ``run()`` instead of restarting (``flamed record``)."""
    event: str | None = None
    """perf event; None: ``cycles`` where the machine has a PMU, else ``cpu-clock``."""
    mmap_pages: int | None = None
    """perf's ring buffer size (``-m``), None for perf's default."""
    perf_rss_limit: int = 512 << 20
    """perf is restarted (``restarts["rss"]``) when its resident memory passes this; 0: never."""
    stall_timeout: float | None = None
    """perf is killed and restarted (``restarts["stalled"]``) when no rotated file came for
    this long (a stopped or stuck perf); None: 3 buckets, at least 10 s."""
    spool_max_bytes: int = 1 << 30
    """Bound on one target's spool: each of perf's files may grow to this divided by the
    files perf keeps (``--max-size``); perf stops at it and is restarted
    (``restarts["spool_full"]``, ``chunks_dropped["spool_full"]``). 0: unbounded."""
    child_wrapper: tuple[str, ...] = field(default_factory=death_wrapper)
    # Interpreted and JIT-compiled code (issue 17); see README.md, "Python, Java, Node".
    perf_maps: bool = True
    """Name JIT frames from the target's ``/tmp/perf-PID.map`` read by flamed itself
    (``flamed.collector.perfmap``), whatever perf named them."""
    java_perfmap: bool = False
    """Ask the target's JVMs to write their perf map (``jcmd PID Compiler.perfmap``) when
    sampling starts and every ``JAVA_PERFMAP_BUCKETS`` buckets."""
    jcmd_path: str = "jcmd"
    jitdump: bool = False
    """``perf inject --jit`` between perf record and perf script: names the frames of JITs
    that write jitdump files (``node --perf-prof``, CPython 3.13 ``-X perf_jit``)."""
    python_view: bool = False
    """Fold with ``PerfOptions(python=True)``: CPython's ``py::`` frames as Python functions."""
    py_spy_path: str | None = None
    """The py-spy binary for the ``py-spy`` backend; None: beside this Python, else on PATH."""
    py_spy_native: bool = False
    """py-spy ``--native``: C frames of extensions between the Python ones."""
    """Prefix of every child's command line that makes the kernel kill it when flamed dies
    (``setpriv --pdeathsig KILL --``; empty where setpriv is missing)."""

    @property
    def stall_seconds(self) -> float:
        if self.stall_timeout is not None:
            return self.stall_timeout
        return max(3 * self.bucket_seconds, 10.0)


class SamplingSession:
    """The loop shared by the perf and DTrace sessions; subclasses implement ``sample()``."""

    backend = ""

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

    # -- public -------------------------------------------------------------

    async def run(self) -> None:
        """Sample until ``stop()``. Only cancellation escapes (and, with ``fail_fast``, the
        first failure): any other error ends one cycle, is counted and backed off from."""
        try:
            while not self._stopping.is_set():
                await self._guarded_cycle()
        except asyncio.CancelledError:
            self.abort()  # cancelled (shutdown timeout): no more folding, only reaping
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
        """After the last sampler ended: fold what is left."""

    def abort(self) -> None:
        """``run()`` was cancelled: give up folding what is left (``finish()`` still runs)."""

    async def sample(self, resolution: Resolution) -> Outcome:
        raise NotImplementedError

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
        outcome = await self.sample(resolution)
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

    def drop(self, reason: str, error: str | None = None) -> None:
        """A chunk is lost: count it under ``reason`` and keep the error for the status API."""
        self.count("chunks_dropped", reason)
        if error:
            self.status.error(error)
            log.warning("target %s: chunk dropped: %s", self.spec.name, error)

    def emit(self, chunk: Chunk, python_cpu: float, tool_cpu: float) -> None:
        self.python_cpu_seconds += python_cpu
        self.tool_cpu_seconds += tool_cpu
        self.status.sampled(chunk.start)
        try:
            self.on_chunk(chunk)
        except Exception:  # the sink's bug must not stop sampling
            log.exception("target %s: the chunk sink failed", self.spec.name)
