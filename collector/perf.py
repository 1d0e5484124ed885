"""The perf session: one long-running ``perf record`` rotating a file per bucket.

``perf record --switch-output=signal`` closes its output file when the session
sends it SIGUSR2 (every bucket) and prints ``[ perf record: Dump
SPOOL/perf.data.<timestamp> ]`` on stderr once the file is complete; that line
is how the session learns of a new file (no file watching, no guessing whether
perf is still writing). Each file is converted by
``perf script`` with only the fields the collapser needs and ``--no-inline``,
its output streamed into the perf collapser as it arrives, then deleted.
The queue of files waiting to be folded is bounded (``max_backlog``; perf's own
``--switch-max-files`` bounds the spool as a second guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from flamed.collapse.errors import ProfilerError
from flamed.collapse.perf import PerfCollapser, PerfOptions
from flamed.collector.base import Chunk, ChunkSink, TargetSpec
from flamed.collector.children import kill_group, run_streaming, spawn, stop_group
from flamed.collector.runner import Outcome, SamplingSession, SessionOptions
from flamed.collector.targets import Resolution

log = logging.getLogger("flamed.collector")

SCRIPT_FIELDS = "comm,pid,tid,time,period,event,ip,sym,dso"
"""What the collapser reads: the event line (comm pid/tid time: period event:) and frames."""
DUMP_LINE = re.compile(rb"\[ perf record: Dump (.+?) \]")
SIZE_LIMIT_LINE = b"size limit reached"
"""perf record's words when ``--max-size`` stopped it."""
SPOOL_NAME = "perf.data"
STDERR_LINES = 20

PACKAGES = "linux-perf on Debian, linux-tools-$(uname -r) on Ubuntu, perf on Fedora"

_detected_events: dict[str, str] = {}


@dataclass(frozen=True)
class _Job:
    path: Path
    start: float
    end: float


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


async def detect_event(perf_path: str) -> str:
    """``cycles`` where perf can count it (a PMU exists), else ``cpu-clock``; detected once."""
    cached = _detected_events.get(perf_path)
    if cached:
        return cached
    try:
        proc = await asyncio.create_subprocess_exec(
            perf_path,
            "stat",
            "-x,",
            "-e",
            "cycles",
            "--",
            "true",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            process_group=0,
        )
    except FileNotFoundError as err:
        raise missing_perf(perf_path) from err
    except OSError as err:
        raise ProfilerError(f"cannot run {perf_path}: {err.strerror or err}") from err
    _out, err_text = await proc.communicate()
    event = "cycles" if counted(err_text.decode("utf-8", "replace")) else "cpu-clock"
    _detected_events[perf_path] = event
    log.info("perf event: %s", event)
    return event


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
    output: Path,
    resolution: Resolution,
) -> list[str]:
    argv = [perf_path, "record", "-F", str(spec.frequency), "-e", event]
    argv += ["--call-graph", spec.call_graph, "-o", str(output)]
    # The session rotates perf's file itself with SIGUSR2 every bucket: perf's own
    # timer (--switch-output=10s, one alarm() re-armed after each switch) was seen to
    # stop rotating for a minute and more on a loaded machine. Without the BPF
    # side-band thread perf is single-threaded, so the signal always wakes its poll().
    argv += ["--switch-output=signal", f"--switch-max-files={options.max_backlog + 2}"]
    argv += ["--no-buildid-cache", "--no-bpf-event"]
    if options.spool_max_bytes:
        # perf stops by itself when one file reaches this: a stalled daemon (which is what
        # rotates the file) cannot fill the disk. perf counts it per file.
        per_file = max(options.spool_max_bytes // (options.max_backlog + 2), 64 << 10)
        argv += [f"--max-size={per_file >> 10}K"]
    if options.mmap_pages:
        argv += ["-m", str(options.mmap_pages)]
    if resolution.mode == "pids":
        argv += ["-p", ",".join(map(str, resolution.pids))]
    elif resolution.mode == "cgroup":
        argv += ["-a", "-G", str(resolution.cgroup)]
    else:
        argv += ["-a"]
    return argv


def script_argv(perf_path: str, path: Path) -> list[str]:
    return [perf_path, "script", "-i", str(path), "--no-inline", "-F", SCRIPT_FIELDS]


class PerfSession(SamplingSession):
    """Samples one target with ``perf record`` and folds each rotated file into a chunk."""

    backend = "perf"

    def __init__(self, spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink) -> None:
        super().__init__(spec, options, on_chunk)
        self.spool = options.spool_dir / safe_name(spec.name)
        self._queue: deque[_Job] = deque()
        self._queued = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._last_dump = 0.0
        self._asked: float | None = None
        """When (monotonic) the oldest SIGUSR2 perf has not answered with a file was sent."""
        self._size_limited = False
        self.perf_pid: int | None = None
        """The running ``perf record``'s pid (tests kill it to inject a fault)."""

    # -- hooks ----------------------------------------------------------------

    async def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        for stale in self.spool.glob(SPOOL_NAME + "*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        self._worker = asyncio.create_task(self._fold_worker())

    async def finish(self) -> None:
        self._closing = True
        self._queued.set()
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._clear_unfinished()

    def abort(self) -> None:
        for job in self._queue:
            with contextlib.suppress(OSError):
                job.path.unlink()
        self._queue.clear()
        if self._worker is not None:
            self._worker.cancel()

    async def sample(self, resolution: Resolution) -> Outcome:
        if not self.status.event:
            self.status.event = self.options.event or await detect_event(self.options.perf_path)
        self._clear_unfinished()
        argv = record_argv(
            self.options.perf_path,
            self.spec,
            self.options,
            self.status.event,
            self.spool / SPOOL_NAME,
            resolution,
        )
        if shutil.which(argv[0]) is None:  # behind the wrapper, a missing perf is no OSError
            raise missing_perf(self.options.perf_path)
        try:
            proc = await spawn(argv, wrapper=self.options.child_wrapper)
        except FileNotFoundError as err:
            raise missing_perf(self.options.perf_path) from err
        except OSError as err:
            raise ProfilerError(f"cannot run {argv[0]}: {err.strerror or err}") from err
        return await self._supervise(proc, resolution)

    def _clear_unfinished(self) -> None:
        """A perf that died leaves its current file without a header: drop it and count it.

        (perf would otherwise keep it as ``perf.data.old``.)
        """
        for name in (SPOOL_NAME, SPOOL_NAME + ".old"):
            path = self.spool / name
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                continue
            if size and name == SPOOL_NAME:
                self.count("chunks_dropped", "unfinished")  # last_error keeps why perf died

    # -- one perf record ------------------------------------------------------

    async def _supervise(self, proc: asyncio.subprocess.Process, resolution: Resolution) -> Outcome:
        self.perf_pid = proc.pid
        log.info("target %s: perf record started (pid %d)", self.spec.name, proc.pid)
        self._last_dump = self.options.clock()
        self._asked = None
        self._size_limited = False
        self.status.state = "running"
        self.status.pids = resolution.pids
        tail: deque[str] = deque(maxlen=STDERR_LINES)
        reader = asyncio.create_task(self._read_stderr(proc, tail))
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        outcome: Outcome | None = None
        try:
            outcome = await self._watch(exited, stopping, resolution)
        finally:
            stopping.cancel()
            if proc.returncode is None and outcome == "stalled":
                kill_group(proc.pid, signal.SIGKILL)  # a stopped perf would not heed SIGINT
            if proc.returncode is None:
                await stop_group(proc, signal.SIGINT, self.options.stop_timeout)
            await exited
            await reader
            self.perf_pid = None
        if outcome is not None:
            return outcome
        return self._after_exit(proc.returncode, "\n".join(tail), resolution)

    async def _watch(
        self,
        exited: asyncio.Task[int],
        stopping: asyncio.Task[bool],
        resolution: Resolution,
    ) -> Outcome | None:
        """Until stopped (stop), the target set changes (targets), or perf exits (None).

        Every bucket, perf is told to rotate its file (SIGUSR2) and name targets are
        re-resolved.
        """
        bucket = self.options.bucket_seconds
        next_rotation = time.monotonic() + bucket
        while True:
            await asyncio.wait(
                {exited, stopping},
                timeout=max(0.0, next_rotation - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stopping.done():
                return "stop"
            if exited.done():
                return None
            if time.monotonic() < next_rotation:
                continue
            next_rotation = max(next_rotation + bucket, time.monotonic() + bucket / 2)
            outcome = self._tick(resolution)
            if outcome is not None:
                return outcome

    def _tick(self, resolution: Resolution) -> Outcome | None:
        """Once a bucket: rotate perf's file, check its memory, re-resolve the target."""
        pid = self.perf_pid
        if pid is not None:
            if self._stalled():
                return "stalled"
            self._rotate(pid)
            limit = self.options.perf_rss_limit
            if limit and resident_bytes(self.options.proc_root, pid) > limit:
                log.warning("target %s: perf grew past %d bytes, restarting", self.spec.name, limit)
                return "rss"
        if self.resolver.dynamic:
            now = self.resolve()
            if now.sampling_key() != resolution.sampling_key():
                return "targets"
            self.status.pids = now.pids
        return None

    def _rotate(self, pid: int) -> None:
        """Ask perf for its file (SIGUSR2); the stall clock runs until a file comes."""
        # Before perf has installed its handler, SIGUSR2 would kill it: wait for it.
        if catches(self.options.proc_root, pid, signal.SIGUSR2):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)
        if self._asked is None:
            self._asked = time.monotonic()

    def _stalled(self) -> bool:
        """Has perf left a rotation unanswered for too long (SIGSTOPped, stuck in the kernel)?

        Counted from the request, not from the last file, so a daemon that was
        itself stopped does not blame perf for the time it did not ask.
        """
        if self._asked is None:
            return False
        waited = time.monotonic() - self._asked
        if waited <= self.options.stall_seconds:
            return False
        log.warning(
            "target %s: perf wrote no file for %.0f s (stopped or stuck), restarting",
            self.spec.name,
            waited,
        )
        return True

    def _after_exit(self, code: int | None, stderr: str, resolution: Resolution) -> Outcome:
        """perf ended by itself: its targets went away (fine) or it failed (raise)."""
        if self._stopping.is_set():
            return "stop"
        if self._size_limited:
            self.drop("spool_full", "perf's file reached the spool bound (is flamed stalled?)")
            return "spool_full"
        if self.resolver.dynamic and self.resolve().sampling_key() != resolution.sampling_key():
            return "targets"
        raise explain_failure("perf record", code, stderr, self.options.proc_root)

    async def _read_stderr(self, proc: asyncio.subprocess.Process, tail: deque[str]) -> None:
        stream = proc.stderr
        assert stream is not None
        pending = b""
        while chunk := await stream.read(4096):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()[-4096:]
            for line in lines:
                self._stderr_line(line, tail)
        if pending:
            self._stderr_line(pending, tail)

    def _stderr_line(self, line: bytes, tail: deque[str]) -> None:
        found = DUMP_LINE.search(line)
        if SIZE_LIMIT_LINE in line:
            self._size_limited = True
        log.debug("target %s: perf: %s", self.spec.name, line.decode("utf-8", "replace"))
        if found is None:
            if line.strip():
                tail.append(line.decode("utf-8", "replace"))
            return
        now = self.options.clock()
        path = Path(os.fsdecode(found.group(1)))
        self._enqueue(_Job(path, self._last_dump, now))
        self._last_dump = now
        self._asked = None

    # -- folding --------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        while len(self._queue) >= self.options.max_backlog:
            old = self._queue.popleft()
            with contextlib.suppress(OSError):
                old.path.unlink()
            self.drop("backlog", f"folding fell behind: dropped {old.path.name}")
        self._queue.append(job)
        self._queued.set()

    async def _fold_worker(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._queued.clear()
                await self._queued.wait()
                continue
            job = self._queue.popleft()
            try:
                await self._fold(job)
            except Exception as err:  # a bug folding one file must not end the session
                log.exception("target %s: folding %s failed", self.spec.name, job.path)
                self.drop("error", f"folding {job.path.name} failed: {err!r}")
            finally:
                with contextlib.suppress(OSError):
                    job.path.unlink()

    async def _fold(self, job: _Job) -> None:
        collapser = PerfCollapser(PerfOptions(period_weights=False))
        python_cpu = 0.0

        def feed(data: bytes) -> None:
            nonlocal python_cpu
            started = time.thread_time()
            collapser.feed(data)
            python_cpu += time.thread_time() - started

        argv = script_argv(self.options.perf_path, job.path)
        try:
            result = await run_streaming(
                argv, feed, timeout=self.options.script_timeout, wrapper=self.options.child_wrapper
            )
        except OSError as err:
            self.drop("script_failed", f"cannot run perf script: {err.strerror or err}")
            return
        if result.timed_out:
            self.drop("script_timeout", f"perf script took over {self.options.script_timeout} s")
            return
        if result.returncode != 0:
            error = explain_failure(
                "perf script", result.returncode, result.stderr, self.options.proc_root
            )
            self.drop("script_failed", f"{error} ({job.path.name})")
            return
        started = time.thread_time()
        folded = collapser.finish()
        python_cpu += time.thread_time() - started
        chunk = Chunk(
            target=self.spec.name,
            start=job.start,
            end=job.end,
            folded=folded,
            samples=collapser.samples,
            bytes_folded=collapser.bytes_fed,
            cpu_seconds=python_cpu + result.cpu_seconds,
            format="perf",
        )
        self.emit(chunk, python_cpu, result.cpu_seconds)


def proc_status(proc_root: Path, pid: int, key: str) -> str:
    """One field of ``/proc/PID/status`` ("" when unreadable)."""
    try:
        text = (proc_root / str(pid) / "status").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line[len(key) + 1 :].strip()
    return ""


def catches(proc_root: Path, pid: int, signum: int) -> bool:
    """Has the process installed a handler for ``signum``? (True where /proc cannot tell.)"""
    if not proc_root.is_dir():
        return True
    caught = proc_status(proc_root, pid, "SigCgt")
    return bool(caught) and bool(int(caught, 16) >> (signum - 1) & 1)


def resident_bytes(proc_root: Path, pid: int) -> int:
    words = proc_status(proc_root, pid, "VmRSS").split()
    return int(words[0]) * 1024 if words and words[0].isdigit() else 0


def safe_name(name: str) -> str:
    """A target name as one folder name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "target"
    return cleaned[:100]
