"""The perf session: one long-lived ``perf record -o - | perf script -i -`` per target.

perf records with ``-k CLOCK_MONOTONIC``, so each sample's time is
``time.monotonic()`` seconds and says which bucket it belongs to however late
the pipe delivers it: ``records.PerfRecords`` cuts perf script's text at its
records, ``buckets.BucketCutter`` folds each into the collapser of its bucket.
perf script loads each binary's symbol tables once and keeps them. Every tick
perf record is pinged through its command pipe (``--control``, perf 5.9 and
later) to write what its rings hold: a quiet target's samples come within a
couple of seconds instead of when a ring is half full (20 s and more). The cutter
belongs to the session, not to one pipeline, so a restart (the target set
changed, a process died, stalled, or outgrew the memory cap) keeps the part of
the bucket already read and loses at most the samples in flight. perf
record's output reaches perf script through flamed, which cuts the KSYMBOL
records a second perf session on the machine makes unreadable
(``perfstream.py``; perf script used to exit on them).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from flamed.collapse.errors import ProfilerError
from flamed.collapse.perf import PerfCollapser, PerfOptions
from flamed.collector.base import ChunkSink, TargetSpec
from flamed.collector.jitnames import JitNames
from flamed.collector.perfstream import StreamMender
from flamed.collector.pipeline import PIPE_SIZE, Pipeline, start_pipeline
from flamed.collector.procfs import cpu_seconds, resident_bytes
from flamed.collector.records import PerfRecords
from flamed.collector.runner import Outcome, SamplingSession, SessionOptions
from flamed.collector.stall import StallWatch
from flamed.collector.targets import Resolution

log = logging.getLogger("flamed.collector")

SCRIPT_FIELDS = "comm,pid,tid,time,period,event,ip,sym,dso"
"""What the collapser reads: the event line (comm pid/tid time: period event:) and frames."""
RING_PAGES = 8
"""perf record's ring buffer per CPU (``-m``) unless configured: perf writes to the pipe when
half of it is full (or when pinged). 32 KiB gave whole-machine samples at 99 Hz to the
collapser 0.5 s after they were taken (median; 1.1 s p99) for 0.6 % of a core, against 4-10 s
with perf's default (512 KiB) and 2.5 % with a wake-up per sample (``--no-buffering``)."""
SAMPLE_BYTES = 64
"""The smallest sample perf writes with a call chain (header, ip, pid/tid, time, period, one
frame): perf's rings and the pipe hold at most their size over this many samples."""
PIPE_BYTES = 3 * PIPE_SIZE
"""What the pipes after perf record hold (to flamed's relay, to perf script, its output)."""
SETTLE = 1.0
"""Seconds perf record gets to end by itself after perf script did (and the reverse)."""
PINGED_SAMPLES = 50
"""Samples a pinged pipeline may take without output before it is stuck (a ping a tick
makes perf write its rings; perf script prints them by the next one)."""

PACKAGES = "linux-perf on Debian, linux-tools-$(uname -r) on Ubuntu, perf on Fedora"

_detected_events: dict[str, str] = {}
_commands: dict[str, bool] = {}


def missing_perf(perf_path: str) -> ProfilerError:
    return ProfilerError(f"perf not found ({perf_path}): install it ({PACKAGES})")


def permission_message(proc_root: Path) -> str:
    try:
        level = (proc_root / "sys/kernel/perf_event_paranoid").read_text().strip()
    except OSError:
        level = "unknown"
    return (
        f"perf is not permitted to sample: kernel.perf_event_paranoid is {level} "
        "(2: a user may profile only their own processes in user space; 1: also the "
        "kernel; 0 or -1: the whole machine). Run flamed as root, give it CAP_PERFMON "
        "(and CAP_SYS_PTRACE for other users' processes), or lower the sysctl, e.g. "
        "`sysctl kernel.perf_event_paranoid=-1`"
    )


def max_sample_rate(proc_root: Path = Path("/proc")) -> int | None:
    """``kernel.perf_event_max_sample_rate``: perf samples no faster (it throttles a higher
    -F to it); the kernel lowers it when perf's interrupts take too long. None if unreadable."""
    try:
        return int((proc_root / "sys/kernel/perf_event_max_sample_rate").read_text())
    except (OSError, ValueError):
        return None


def explain_failure(what: str, code: int | None, stderr: str, proc_root: Path) -> ProfilerError:
    """A one-line error from perf's exit code and the tail of its stderr."""
    lowered = stderr.lower()
    if "perf_event_paranoid" in lowered or "permission denied" in lowered:
        return ProfilerError(permission_message(proc_root))
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("[ perf record:")]
    detail = "; ".join(dict.fromkeys(lines[-3:])) or "no message"  # a repeated line once
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited {code}"
    return ProfilerError(f"{what} {how}: {detail}")


async def ask_perf(perf_path: str, *args: str) -> str:
    """What perf prints (stdout and stderr) for ``args``; ProfilerError if it cannot run."""
    try:
        proc = await asyncio.create_subprocess_exec(
            perf_path,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            process_group=0,
        )
    except FileNotFoundError as err:
        raise missing_perf(perf_path) from err
    except OSError as err:
        raise ProfilerError(f"cannot run {perf_path}: {err.strerror or err}") from err
    out, _ = await proc.communicate()
    return out.decode("utf-8", "replace")


async def detect_event(perf_path: str) -> str:
    """``cycles`` where perf can count it (a PMU exists), else ``cpu-clock``; detected once."""
    cached = _detected_events.get(perf_path)
    if cached:
        return cached
    stat = await ask_perf(perf_path, "stat", "-x,", "-e", "cycles", "--", "true")
    event = "cycles" if counted(stat) else "cpu-clock"
    _detected_events[perf_path] = event
    log.info("perf event: %s", event)
    return event


async def takes_commands(perf_path: str) -> bool:
    """Does this perf record take a command pipe (``--control``, perf 5.9 and later)?"""
    if perf_path not in _commands:
        _commands[perf_path] = "--control" in await ask_perf(perf_path, "record", "-h")
    return _commands[perf_path]


def counted(stat_csv: str) -> bool:
    """Does ``perf stat -x,`` output show a number for the cycles event?"""
    for line in stat_csv.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("cycles"):
            return fields[0].strip().replace(".", "", 1).isdigit()
    return False


def record_argv(
    perf_path: str,
    spec: TargetSpec,
    options: SessionOptions,
    event: str,
    resolution: Resolution,
) -> list[str]:
    argv = [perf_path, "record", "-F", str(spec.frequency), "-e", event]
    argv += ["--call-graph", spec.call_graph, "-k", "CLOCK_MONOTONIC", "-o", "-"]
    argv += ["--no-buildid-cache", "--no-bpf-event", "-m", str(options.mmap_pages or RING_PAGES)]
    if resolution.mode == "pids":
        argv += ["-p", ",".join(map(str, resolution.pids))]
    elif resolution.mode == "cgroup":
        argv += ["-a", "-G", str(resolution.cgroup)]
    else:
        argv += ["-a"]
    return argv


def script_argv(perf_path: str, source: str = "-") -> list[str]:
    fields = ["-F", SCRIPT_FIELDS]
    return [perf_path, "script", "-i", source, "--no-inline", "--show-lost-events", *fields]


@dataclass
class _Run:
    """A running pipeline and the reader of its output."""

    pipeline: Pipeline
    records: PerfRecords


class PerfSession(SamplingSession):
    """Samples one target with a perf pipeline and folds its stream into a chunk per bucket."""

    backend = "perf"

    def __init__(self, spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink) -> None:
        super().__init__(spec, options, on_chunk)
        self.perf_pid: int | None = None
        """The running ``perf record``'s pid (tests signal it to inject a fault)."""
        self.script_pid: int | None = None
        """The running ``perf script``'s pid."""
        self._script_cpu = 0.0
        """CPU seconds of the running perf script already handed out with chunks."""
        self.jit = JitNames(options, f"target {spec.name}")
        """JIT frames: perf maps read by flamed, JVMs asked for theirs."""
        self.status.jit_maps = self.jit.stats()

    # -- hooks ----------------------------------------------------------------

    def new_collapser(self) -> PerfCollapser:
        options = PerfOptions(period_weights=False, python=self.options.python_view)
        return PerfCollapser(options, maps=self.jit.resolver)

    async def finish(self) -> None:
        await self.jit.close()
        await super().finish()

    def stamp_now(self) -> float:
        return time.monotonic()  # perf record -k CLOCK_MONOTONIC

    def clock_offset(self) -> float:
        return self.options.clock() - time.monotonic()

    def tool_cpu(self) -> float:
        """perf script's CPU since the last chunk (what it spends after that is not known)."""
        if self.script_pid is None:
            return 0.0
        total = cpu_seconds(self.options.proc_root, self.script_pid)
        spent = max(0.0, total - self._script_cpu)
        self._script_cpu = max(total, self._script_cpu)
        return spent

    async def sample(self, resolution: Resolution) -> Outcome:
        """Run pipelines until stopped, stuck, failing or the target set changes; one past
        the memory cap is handed over to a new pipeline without a gap."""
        if not self.status.event:
            self.status.event = self.options.event or await detect_event(self.options.perf_path)
        run = await self._start(resolution)
        try:
            while (outcome := await self._watch(run.pipeline, resolution)) == "rss":
                if self.stopping:
                    break
                self.count("restarts", "rss")
                run = await self._hand_over(run, resolution)
        except BaseException:  # cancelled, or a failed hand-over: nothing is left running
            await run.pipeline.kill()
            raise
        if outcome is None:  # the pipeline ended by itself
            await run.pipeline.settle(SETTLE)
        await self._end(run, kill=outcome == "stalled")  # a stopped process would not heed SIGINT
        return outcome or self._after_exit(run.pipeline, resolution)

    # -- pipelines ------------------------------------------------------------

    async def _start(self, resolution: Resolution) -> _Run:
        perf = self.options.perf_path
        argv = record_argv(perf, self.spec, self.options, self.status.event, resolution)
        if shutil.which(perf) is None:  # behind the wrapper, a missing perf is no OSError
            raise missing_perf(perf)
        records = PerfRecords(self.cutter, on_lost=self._lost)
        try:
            pipeline = await start_pipeline(
                argv,
                script_argv(perf),
                self.timed(records.feed),
                name=f"target {self.spec.name}",
                wrapper=self.options.child_wrapper,
                env={**os.environ, "FLAMED_TARGET": self.spec.name},
                control=await takes_commands(perf),
                mender=StreamMender(self._mended),
            )
        except FileNotFoundError as err:
            raise missing_perf(perf) from err
        except OSError as err:
            raise ProfilerError(f"cannot run {perf}: {err.strerror or err}") from err
        log.info(
            "target %s: perf record (pid %d) | perf script (pid %d) started",
            self.spec.name,
            pipeline.record.pid,
            pipeline.script.pid,
        )
        self.perf_pid, self.script_pid = pipeline.record.pid, pipeline.script.pid
        self._script_cpu = 0.0
        self.status.state = "running"
        self.status.pids = resolution.pids
        self.jit.started()
        return _Run(pipeline, records)

    async def _end(self, run: _Run, kill: bool = False) -> None:
        """Stop a pipeline (SIGINT, drained) or kill it; what it wrote is folded."""
        if kill:
            await run.pipeline.kill()
        else:
            await run.pipeline.stop(self.options.stop_timeout)
        run.records.finish()
        if self.perf_pid == run.pipeline.record.pid:
            self.perf_pid = self.script_pid = None

    async def _hand_over(self, old: _Run, resolution: Resolution) -> _Run:
        """Start a new pipeline beside the old one, sampling the same; once it gives output
        (so perf samples), cut at that moment: the old one keeps what is stamped before, the
        new one the rest. (A new target set is not handed over: the two would not sample
        the same processes, and the old one already stopped when its processes went.)"""
        new = await self._start(resolution)
        new.records.since = math.inf  # until the cut
        try:
            await self._first_output(new.pipeline)
        except BaseException:
            await new.pipeline.kill()
            raise
        cut = time.monotonic()
        old.records.until = new.records.since = cut
        await self._end(old)
        log.info("target %s: handed over to the new perf at %.3f", self.spec.name, cut)
        return new

    async def _first_output(self, pipeline: Pipeline) -> None:
        """Until the pipeline wrote something, for a bucket at most (an idle target writes
        nothing); a pipeline that ends meanwhile fails the hand-over."""
        stopping = asyncio.create_task(self._stopping.wait())
        deadline = time.monotonic() + max(self.options.bucket_seconds, 2.0)
        try:
            while not pipeline.bytes_out and time.monotonic() < deadline:
                pipeline.ping()
                await self.tick(pipeline.ended, stopping)
                if pipeline.ended.done():
                    await pipeline.stop(self.options.stop_timeout)
                    what, code, stderr = pipeline.failure()
                    raise explain_failure(what, code, stderr, self.options.proc_root)
                if stopping.done():
                    return
        finally:
            stopping.cancel()

    async def _watch(self, pipeline: Pipeline, resolution: Resolution) -> Outcome | None:
        """Until stopped (stop), perf script's output ends (None), or a check fails.

        Buckets are closed by the clock every tick; the pipeline is checked once a bucket.
        """
        bucket = self.options.bucket_seconds
        stall = StallWatch(
            self.options.stall_seconds,
            bucket,
            self.spec.frequency,
            self.options.proc_root,
            patience=self._held_samples(pipeline),
        )
        stopping = asyncio.create_task(self._stopping.wait())
        next_check = time.monotonic() + bucket
        try:
            while True:
                pipeline.ping()
                await self.tick(pipeline.ended, stopping)
                self.jit.tick(self.status.pids)
                if stopping.done():
                    return "stop"
                if pipeline.ended.done():
                    return None
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + bucket
                    outcome = self._check(pipeline, resolution, stall)
                    if outcome is not None:
                        return outcome
        finally:
            stopping.cancel()

    def _check(
        self, pipeline: Pipeline, resolution: Resolution, stall: StallWatch
    ) -> Outcome | None:
        """Once a bucket: is the pipeline stuck or too big, has the target set changed?"""
        record, script = pipeline.record.pid, pipeline.script.pid
        stuck = stall.check(pipeline.bytes_out, record, script, resolution)
        if stuck is not None:
            log.warning("target %s: %s, restarting perf", self.spec.name, stuck)
            return "stalled"
        limit = self.options.perf_rss_limit
        for what, pid in (("perf record", record), ("perf script", script)):
            if limit and resident_bytes(self.options.proc_root, pid) > limit:
                name = self.spec.name
                log.warning("target %s: %s grew past %d bytes, restarting", name, what, limit)
                return "rss"
        if self.resolver.dynamic:
            now = self.resolve()
            if now.sampling_key() != resolution.sampling_key():
                return "targets"
            self.status.pids = now.pids
        return None

    def _held_samples(self, pipeline: Pipeline) -> int:
        """How many samples perf can hold without a byte of output: what its rings and the
        pipes hold, or, when it is pinged every tick, what a few ticks bring."""
        if pipeline.commands is not None:
            return PINGED_SAMPLES
        ring = (self.options.mmap_pages or RING_PAGES) * os.sysconf("SC_PAGE_SIZE")
        return (ring * (os.cpu_count() or 1) + PIPE_BYTES) // SAMPLE_BYTES

    def _after_exit(self, pipeline: Pipeline, resolution: Resolution) -> Outcome:
        """The pipeline ended by itself: its targets went away (fine) or it failed (raise)."""
        if self._stopping.is_set():
            return "stop"
        if self.resolver.dynamic and self.resolve().sampling_key() != resolution.sampling_key():
            return "targets"
        what, code, stderr = pipeline.failure()
        raise explain_failure(what, code, stderr, self.options.proc_root)

    def _lost(self, count: int) -> None:
        self.status.samples_lost += count

    def _mended(self, fix: str) -> None:
        fixed = self.status.records_fixed
        fixed[fix] = fixed.get(fix, 0) + 1
