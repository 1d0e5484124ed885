"""The py-spy session: Python functions of running CPython processes, without restarting them.

perf names a CPython process's frames after its interpreter's C functions
(``_PyEval_EvalFrameDefault`` ...), unless it runs 3.12 or later with
``-X perf``. py-spy (``pip install 'flamed[python]'``) reads the interpreter's
own frame objects out of the process's memory (``process_vm_readv``: root or
``CAP_SYS_PTRACE``), for any CPython from 2.7 to 3.13, with nothing to change in
the target. It is chosen over austin because its current release runs on
Debian 12 (austin-dist 4 needs glibc 2.38), it can add native frames
(``--native``), and it is the sampler most continuous profilers build on.

py-spy writes its profile when it stops, not while it samples, so the session
runs one ``py-spy record --format raw`` per process per bucket: started at the
bucket's start and stopped with SIGINT at its end (py-spy then writes the
stacks it counted, ``flamed.collapse.pyspy`` reads them under the process's
name). A bucket's chunk holds the stacks of all of the target's processes
(``MAX_PROCESSES`` at most). What py-spy needs to attach (a few tenths of a
second) is missing at each bucket's start. py-spy runs with ``--nonblocking``
(the target is never paused) and ``--nolineno`` (a frame per function, written
``function (file)``). A process that exits ends its py-spy; the target is
resolved again after each bucket, so a restarted process is followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flamed.collapse.errors import ProfilerError
from flamed.collapse.folded import Folded
from flamed.collapse.pyspy import PySpyCollapser
from flamed.collector.base import Chunk
from flamed.collector.children import spawn, stop_group
from flamed.collector.runner import Outcome, SamplingSession
from flamed.collector.targets import Resolution

log = logging.getLogger("flamed.collector")

PY_SPY = "py-spy"
INSTALL = "pip install 'flamed[python]'"
MAX_PROCESSES = 32
"""Processes of one target sampled at once; the others wait (logged once)."""
OUTPUT_LIMIT = 16 << 20
"""Bytes read from one py-spy run; beyond, the run's output is dropped."""
ERROR_BYTES = 4096
MIN_RUN = 1.0
"""A run is never shorter than this: a bucket that ends sooner is joined to the next."""


def find_py_spy(configured: str | None) -> str:
    """The py-spy to run: as configured, else beside this Python (where the ``python``
    extra installs it), else on PATH (absolute entries only)."""
    if configured:
        found = shutil.which(configured) if "/" not in configured else configured
        if found and os.access(found, os.X_OK):
            return found
        raise ProfilerError(f"py-spy not found ({configured})")
    beside = Path(sys.executable).parent / PY_SPY
    if os.access(beside, os.X_OK):
        return str(beside)
    path = os.pathsep.join(
        entry for entry in os.environ.get("PATH", "").split(os.pathsep) if os.path.isabs(entry)
    )
    found = shutil.which(PY_SPY, path=path)
    if found is None:
        raise ProfilerError(f"the py-spy backend needs py-spy: {INSTALL}")
    return found


def record_argv(py_spy: str, pid: int, rate: int, native: bool) -> list[str]:
    argv = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
    argv += ["--output", "/dev/stdout", "--nonblocking", "--nolineno"]
    return [*argv, "--native"] if native else argv


@dataclass
class _Run:
    """One py-spy on one process for one bucket."""

    pid: int
    proc: asyncio.subprocess.Process
    collapser: PySpyCollapser
    output: asyncio.Task[bool]
    errors: asyncio.Task[bytes]
    cpu: float = 0.0

    def failure(self) -> str | None:
        """Why it gave nothing, in one line (None: it ran, or its process exited)."""
        if self.proc.returncode == 0 or self.collapser.samples:
            return None
        text = self.errors.result().decode("utf-8", "replace") if self.errors.done() else ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = lines[0].removeprefix("Error: ") if lines else "no message"
        return f"py-spy on pid {self.pid} exited {self.proc.returncode}: {detail}"


class PySpySession(SamplingSession):
    """Samples a target's Python processes with py-spy, a chunk per bucket."""

    backend = "py-spy"

    async def sample(self, resolution: Resolution) -> Outcome:
        if resolution.mode == "all":
            raise ProfilerError(
                "the py-spy backend samples processes: give pids, process, cmdline or unit"
            )
        py_spy = find_py_spy(self.options.py_spy_path)
        self.status.state = "running"
        self.status.pids = resolution.pids
        while True:
            pids = self._chosen(resolution.pids)
            start, end = self._bucket()
            runs = await self._round(py_spy, pids, end)
            self._emit_round(runs, start, end)
            if self.stopping:
                return "stop"
            now = self.resolve()
            if now.pids != resolution.pids:
                return "targets"
            failures = [run.failure() for run in runs]
            if failures and all(failures):
                raise ProfilerError(str(failures[0]))

    def _chosen(self, pids: tuple[int, ...]) -> tuple[int, ...]:
        if len(pids) > MAX_PROCESSES:
            log.warning(
                "target %s: %d processes, py-spy samples the first %d",
                self.spec.name,
                len(pids),
                MAX_PROCESSES,
            )
        return pids[:MAX_PROCESSES]

    def _bucket(self) -> tuple[float, float]:
        """The wall-clock bucket this round fills: [start, end), end at least MIN_RUN away."""
        size = self.options.bucket_seconds
        now = self.options.clock()
        end = (math.floor(now / size) + 1) * size
        if end - now < min(MIN_RUN, size / 2):
            end += size
        return end - size, end

    async def _round(self, py_spy: str, pids: tuple[int, ...], end: float) -> list[_Run]:
        """One py-spy per process until ``end`` (or stop, or every one has exited)."""
        if not pids:  # a unit without processes for now
            await self.sleep(max(0.0, end - self.options.clock()))
            return []
        runs: list[_Run] = []
        waits: set[asyncio.Future[Any]] = set()
        try:
            for pid in pids:
                runs.append(await self._start(py_spy, pid))
            waits.add(asyncio.create_task(all_exited(runs)))
            waits.add(asyncio.create_task(self._stopping.wait()))
            timeout = max(0.0, end - self.options.clock())
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*(self._stop(run) for run in runs))
        return runs

    async def _start(self, py_spy: str, pid: int) -> _Run:
        argv = record_argv(py_spy, pid, self.spec.frequency, self.options.py_spy_native)
        try:
            proc = await spawn(
                argv, stdout=asyncio.subprocess.PIPE, wrapper=self.options.child_wrapper
            )
        except OSError as err:
            raise ProfilerError(f"cannot run {py_spy}: {err.strerror or err}") from err
        collapser = PySpyCollapser(process_name(self.options.proc_root, pid))
        assert proc.stdout is not None and proc.stderr is not None
        output = asyncio.create_task(read_into(proc.stdout, collapser))
        errors = asyncio.create_task(read_tail(proc.stderr))
        return _Run(pid, proc, collapser, output, errors)

    async def _stop(self, run: _Run) -> None:
        """SIGINT: py-spy writes what it counted and exits; killed past the stop timeout."""
        run.cpu = process_cpu(self.options.proc_root, run.proc.pid)
        if run.proc.returncode is None:
            await stop_group(run.proc, signal.SIGINT, self.options.stop_timeout)
        if not await run.output:
            log.warning(
                "target %s: py-spy wrote over %d bytes, dropped", self.spec.name, OUTPUT_LIMIT
            )
            run.collapser = PySpyCollapser("")
        await run.errors

    def _emit_round(self, runs: list[_Run], start: float, end: float) -> None:
        started = time.thread_time()
        folded = Folded()
        for run in runs:
            folded.update(run.collapser.finish())
        python_cpu = time.thread_time() - started
        tool_cpu = sum(run.cpu for run in runs)
        chunk = Chunk(
            target=self.spec.name,
            start=start,
            end=end,
            folded=folded,
            samples=int(folded.total()),
            bytes_folded=sum(run.collapser.bytes_fed for run in runs),
            cpu_seconds=python_cpu + tool_cpu,
            format=self.backend,
        )
        self.emit(chunk, python_cpu, tool_cpu)


async def all_exited(runs: list[_Run]) -> None:
    for run in runs:
        await run.proc.wait()


async def read_into(stream: asyncio.StreamReader, collapser: PySpyCollapser) -> bool:
    """Feed the stream to ``collapser``; False (and the rest drained unread) past OUTPUT_LIMIT."""
    read = 0
    while data := await stream.read(1 << 16):
        read += len(data)
        if read <= OUTPUT_LIMIT:
            collapser.feed(data)
    return read <= OUTPUT_LIMIT


async def read_tail(stream: asyncio.StreamReader) -> bytes:
    """The first ERROR_BYTES of a stream (py-spy's error comes first), the rest drained."""
    kept = b""
    while data := await stream.read(1 << 16):
        kept = (kept + data)[:ERROR_BYTES]
    return kept


def process_name(proc_root: Path, pid: int) -> str:
    with contextlib.suppress(OSError):
        return (proc_root / str(pid) / "comm").read_text().strip()
    return "python"


def process_cpu(proc_root: Path, pid: int) -> float:
    """User plus system CPU seconds of a live process (0 when gone)."""
    try:
        text = (proc_root / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
