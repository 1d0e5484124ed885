"""Child processes: each in its own process group, pipes drained before waiting, always reaped.

``spawn`` starts a long-running sampler (perf record, dtrace) with asyncio;
``stop_group`` asks it to finish with a signal and kills the group past a
timeout. ``run_streaming`` runs a short-lived converter (perf script), hands
its stdout to a callback as it arrives and reaps it with ``os.wait4`` so the
caller learns the CPU time it used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

log = logging.getLogger("flamed.collector")


def death_wrapper(
    platform: str = sys.platform, which: Callable[[str], str | None] = shutil.which
) -> tuple[str, ...]:
    """A command prefix that gives the child PR_SET_PDEATHSIG=SIGKILL, so it dies with flamed.

    util-linux's ``setpriv --pdeathsig KILL`` sets it and then execs the real
    command (same pid). Setting it in the child with ``preexec_fn`` would be
    unsafe in a threaded parent. The signal fires when the thread that forked
    the child ends: children are always started from the event loop's thread.
    Empty (no guard) off Linux, without setpriv, or where setpriv cannot run:
    under the hardened systemd unit it fails ("activate capabilities: Operation
    not permitted", it re-applies a capability bounding set it may not touch);
    there ``KillMode=control-group`` takes perf down with the daemon instead.
    """
    if not platform.startswith("linux"):
        return ()
    setpriv = which("setpriv")
    if not setpriv:
        return ()
    prefix = (setpriv, "--pdeathsig", "KILL", "--")
    return prefix if wrapper_works(prefix) else ()


@functools.cache
def wrapper_works(prefix: tuple[str, ...]) -> bool:
    """Does ``prefix true`` run here? Asked once per process."""
    try:
        done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()
        log.info("no parent-death guard for children: %s", reason)
    return done.returncode == 0


async def spawn(
    argv: list[str], *, stdout: int | None = None, wrapper: tuple[str, ...] = ()
) -> asyncio.subprocess.Process:
    """Start ``argv`` (behind ``wrapper``) in a new process group with stderr piped.

    OSError propagates.
    """
    return await asyncio.create_subprocess_exec(
        *wrapper,
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL if stdout is None else stdout,
        stderr=asyncio.subprocess.PIPE,
        process_group=0,
    )


def kill_group(pid: int, sig: int) -> None:
    """Signal a child's whole process group; a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop_group(
    proc: asyncio.subprocess.Process, sig: int = signal.SIGINT, timeout: float = 10.0
) -> int:
    """Send ``sig`` to the child's group, wait up to ``timeout``, then SIGKILL; return its code.

    The caller must keep draining the child's pipes meanwhile (a reader task).
    """
    if proc.returncode is None:
        kill_group(proc.pid, sig)
        try:
            async with asyncio.timeout(timeout):
                return await proc.wait()
        except TimeoutError:
            pass
    kill_group(proc.pid, signal.SIGKILL)
    return await proc.wait()


@dataclass(frozen=True)
class StreamResult:
    returncode: int
    cpu_seconds: float
    """User plus system CPU time of the child, from ``wait4``."""
    stderr: str
    """The last few KB of its stderr."""
    timed_out: bool


class _Tail:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.data = b""

    def __call__(self, data: bytes) -> None:
        self.data = (self.data + data)[-self.limit :]


class _PipeProtocol(asyncio.Protocol):
    """Hands every read straight to a callback (no buffering beyond the pipe) and marks EOF."""

    def __init__(self, sink: Callable[[bytes], None], done: asyncio.Future[None]) -> None:
        self.sink = sink
        self.done = done

    def data_received(self, data: bytes) -> None:
        try:
            self.sink(data)
        except Exception as err:  # a failing sink ends the stream, reported to the caller
            if not self.done.done():
                self.done.set_exception(err)

    def eof_received(self) -> bool:
        if not self.done.done():
            self.done.set_result(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _pump(pipe: IO[bytes], sink: Callable[[bytes], None]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.connect_read_pipe(lambda: _PipeProtocol(sink, done), pipe)
    try:
        await done
    finally:
        transport.close()


async def run_streaming(
    argv: list[str],
    sink: Callable[[bytes], None],
    *,
    timeout: float,
    wrapper: tuple[str, ...] = (),
) -> StreamResult:
    """Run ``argv``, feed its stdout to ``sink`` as it arrives; kill its group past ``timeout``.

    Raises OSError when it cannot start. The child is always reaped.
    """
    loop = asyncio.get_running_loop()
    child = subprocess.Popen(
        [*wrapper, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        process_group=0,
    )
    waiter = loop.run_in_executor(None, os.wait4, child.pid, 0)
    tail = _Tail()
    finished = False
    timed_out = False
    try:
        assert child.stdout is not None and child.stderr is not None
        async with asyncio.timeout(timeout):
            await asyncio.gather(_pump(child.stdout, sink), _pump(child.stderr, tail))
        finished = True
    except TimeoutError:
        timed_out = True
    finally:
        if not finished:
            kill_group(child.pid, signal.SIGKILL)
        _pid, status, usage = await asyncio.shield(waiter)
        child.returncode = os.waitstatus_to_exitcode(status)
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    cpu = usage.ru_utime + usage.ru_stime
    text = tail.data.decode("utf-8", "replace")
    return StreamResult(child.returncode, cpu, text, timed_out)
