"""``perf record -o - | perf script -i -``: the two children of one sampling run.

Both start in process groups of their own behind the parent-death guard. With
a ``mender``, flamed relays perf record's output to perf script through it
(``Relay``: a read, mended, written; the next read only once perf script's pipe
took it all, so a slow perf script still fills perf record's pipe and then its
ring); without, the pipe between them is theirs alone. Either way either one's
death ends the other: EOF for perf script, EPIPE for perf record. Every pipe is
grown to 1 MiB (Linux's limit for a user): when perf script stops to load a big
binary's symbols, or flamed stops reading, perf record keeps emptying its ring
buffer into the pipes instead of losing samples (about 20 s of a busy machine
at 99 Hz). perf script's stdout is read on the event loop every ``READ_EVERY``
seconds (all the pipe holds) and handed to a sink; the tails of both stderrs
are kept for error messages. ``stop()`` asks perf record to finish (SIGINT:
it writes what its buffers hold), lets perf script drain the pipe, and kills
whatever is left after the timeout; ``kill()`` does not ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

from flamed.collector.children import kill_group, spawn, stop_group

log = logging.getLogger("flamed.collector")

DEVNULL = asyncio.subprocess.DEVNULL
STDERR_LINES = 20
READ_SIZE = 1 << 16
PIPE_SIZE = 1 << 20
READ_EVERY = 0.5
"""Seconds between reads of perf script's output. perf script writes 4 KiB at a time;
reading at each write woke the daemon 6 times a second on a busy machine (27 for a steady
writer), each wake-up costing more than the bytes it brought; on a timer it is 2, and the
samples come 0.25 s later (median). The pipe holds 1 MiB: 10 s of a busy machine."""
MAX_DRAIN = 4 * PIPE_SIZE
"""Bytes read at most per turn, so a writer faster than the daemon does not hold the loop."""


class Pipeline:
    """A started pair; ``ended`` completes when perf script's output has ended."""

    def __init__(
        self,
        record: asyncio.subprocess.Process,
        script: asyncio.subprocess.Process,
        output: int,
        sink: Callable[[bytes], None],
        name: str,
        commands: int | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.record = record
        self.script = script
        self.output: int | None = output
        """The read end of perf script's stdout (non-blocking), ours until ``kill()``."""
        self.bytes_out = 0
        self.record_stopped = False
        """perf record was still running when ``stop()`` or ``kill()`` ended it."""
        self.commands = commands
        """The write end of perf record's command pipe (``--control``), if it has one."""
        self.record_errors: deque[str] = deque(maxlen=STDERR_LINES)
        self.script_errors: deque[str] = deque(maxlen=STDERR_LINES)
        self._tasks = [
            asyncio.create_task(read_lines(record, self.record_errors, f"{name}: perf record")),
            asyncio.create_task(read_lines(script, self.script_errors, f"{name}: perf script")),
        ]
        self._relay = relay
        self._closing = False
        self.ended = asyncio.create_task(self._read_output(output, sink))

    async def _read_output(self, fd: int, sink: Callable[[bytes], None]) -> None:
        """Every READ_EVERY seconds, what perf script wrote since; until its end (or
        ``kill()`` gives up on it)."""
        while self._drain(fd, sink) and not self._closing:
            await asyncio.sleep(READ_EVERY)

    def _drain(self, fd: int, sink: Callable[[bytes], None]) -> bool:
        """Hand what the pipe holds to the sink (at most MAX_DRAIN bytes); False at its end."""
        for _ in range(MAX_DRAIN // READ_SIZE):
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return True
            if not data:
                return False
            self.bytes_out += len(data)
            sink(data)
        return True

    def ping(self) -> None:
        """Ask perf record to write what its ring buffers hold now (``ping`` wakes it; it
        writes whatever is there, then perf script prints what came before). Without a
        command pipe, or when perf record does not read it (stopped), nothing happens."""
        if self.commands is not None:
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(self.commands, b"ping\n")

    async def settle(self, timeout: float) -> None:
        """After perf script's output ended: let both exit by themselves for ``timeout``
        (perf record ends of the broken pipe, or of its own failure), so that ``failure()``
        does not blame the perf record that ``stop()`` would end."""
        waits = [asyncio.ensure_future(proc.wait()) for proc in (self.record, self.script)]
        await asyncio.wait(waits, timeout=timeout)
        for wait in waits:
            wait.cancel()

    async def stop(self, timeout: float) -> None:
        """SIGINT to perf record, perf script drains the pipe; SIGKILL past ``timeout``."""
        self.record_stopped |= self.record.returncode is None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await stop_group(self.record, signal.SIGINT, timeout)
                await asyncio.shield(self.ended)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL both groups (a stopped process dies too), reap both, drain what is left."""
        self.record_stopped |= self.record.returncode is None
        for proc in (self.record, self.script):  # also what a leader left in its group
            kill_group(proc.pid, signal.SIGKILL)
        await asyncio.gather(self.record.wait(), self.script.wait())
        if self._relay is not None:  # both ends are dead: it ends by itself, or now
            await asyncio.wait([self._relay.ended], timeout=1.0)
            self._relay.close()
        # Whatever still holds perf script's stdout elsewhere does not keep us waiting.
        await asyncio.wait([self.ended], timeout=1.0)
        self._closing = True
        await asyncio.gather(self.ended, *self._tasks, return_exceptions=True)
        close(self.commands, self.output)
        self.commands = self.output = None

    def failure(self) -> tuple[str, int | None, str]:
        """Which child failed, its exit code and stderr tail, once both have ended.

        perf script is to blame when it was killed, or failed while perf record ended
        well, of the broken pipe it left, or was still running (stopped by us); otherwise
        perf record (perf script then only saw its input end).
        """
        record, script = self.record.returncode, self.script.returncode
        record_fine = record in (0, -signal.SIGPIPE) or self.record_stopped
        if script is not None and script != 0 and (script < 0 or record_fine):
            return "perf script", script, "\n".join(self.script_errors)
        return "perf record", record, "\n".join(self.record_errors)


async def start_pipeline(
    record_argv: list[str],
    script_argv: list[str],
    sink: Callable[[bytes], None],
    *,
    name: str,
    wrapper: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    control: bool = False,
    mender: Mender | None = None,
) -> Pipeline:
    """Start both children. OSError (perf missing, ...) propagates, nothing left running.

    With ``control``, perf record gets a command pipe (``--control fd:N``) for ``ping()``;
    with a ``mender``, its output goes through it to perf script (``Relay``).
    """
    between, output = grown_pipe(), grown_pipe()
    recorded = grown_pipe() if mender is not None else between  # perf record's stdout
    theirs, commands = command_pipe() if control else ((), None)
    if theirs:
        record_argv = [*record_argv[:2], "--control", f"fd:{theirs[0]}", *record_argv[2:]]
    ours = [output[0], commands, *((recorded[0], between[1]) if mender is not None else ())]
    started: list[asyncio.subprocess.Process] = []
    try:
        started.append(
            await spawn(record_argv, stdout=recorded[1], wrapper=wrapper, env=env, pass_fds=theirs)
        )
        started.append(
            await spawn(script_argv, stdin=between[0], stdout=output[1], wrapper=wrapper, env=env)
        )
    except BaseException:  # or cancelled (the daemon stopping): nothing may outlive the start
        await kill_all(started)
        close(*ours)
        raise
    finally:
        close(*{between[0], output[1], recorded[1], *theirs})
    os.set_blocking(output[0], False)
    record, script = started
    relay = None if mender is None else Relay(recorded[0], between[1], mender)
    return Pipeline(record, script, output[0], sink, name, commands, relay)


class Mender(Protocol):
    """Mends perf record's stream on its way to perf script (``perfstream.StreamMender``)."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Relay:
    """perf record's output (``source``) through a mender to perf script (``target``), to
    the end of either. One read of at most READ_SIZE bytes at a time, written whole before
    the next (the reader waits while the writer does), so flamed holds no more than that
    and a stalled perf script stalls perf record as a pipe between them would. Callbacks
    on the event loop, the reader left registered while perf script keeps up (a task
    awaiting a future per read cost the daemon 0.27 ms a read here, this 0.11-0.14 ms).
    Closes both ends at the end (perf record then gets EPIPE)."""

    def __init__(self, source: int, target: int, mender: Mender) -> None:
        self.source, self.target, self.mender = source, target, mender
        self.loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self._pending = memoryview(b"")
        self._at_end = False
        os.set_blocking(source, False)
        os.set_blocking(target, False)
        self.loop.add_reader(source, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.source, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._at_end = not data
        self._pending = memoryview(self.mender.feed(data) if data else self.mender.finish())
        if not self._write():
            self.loop.remove_reader(self.source)  # until perf script took it all
            self.loop.add_writer(self.target, self._writable)

    def _writable(self) -> None:
        if self._write() and not self.ended.done():
            self.loop.remove_writer(self.target)
            self.loop.add_reader(self.source, self._readable)

    def _write(self) -> bool:
        """Write what is pending; False if perf script's pipe is full first."""
        try:
            while self._pending:
                self._pending = self._pending[os.write(self.target, self._pending) :]
        except BlockingIOError:
            return False
        except OSError:  # perf script ended (EPIPE)
            self._at_end = True
        if self._at_end:
            self.close()
        return True

    def close(self) -> None:
        if not self.ended.done():
            self.loop.remove_reader(self.source)
            self.loop.remove_writer(self.target)
            close(self.source, self.target)
            self.ended.set_result(None)


async def kill_all(children: list[asyncio.subprocess.Process]) -> None:
    """SIGKILL each child's group and reap it (a start that failed or was cancelled)."""
    for proc in children:
        kill_group(proc.pid, signal.SIGKILL)
    await asyncio.gather(*(proc.wait() for proc in children))


def command_pipe() -> tuple[tuple[int], int]:
    """A pipe for perf record's commands: its end (to pass it on), and ours (non-blocking)."""
    theirs, ours = os.pipe()
    os.set_blocking(ours, False)
    return (theirs,), ours


def close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            os.close(fd)


def grown_pipe() -> tuple[int, int]:
    """A pipe of PIPE_SIZE bytes where the system allows it (the default 64 KiB elsewhere)."""
    reading, writing = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(writing, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return reading, writing


async def read_lines(proc: asyncio.subprocess.Process, tail: deque[str], what: str) -> None:
    """Keep the last non-empty lines of a child's stderr (each cut to 500 characters)."""
    stream = proc.stderr
    assert stream is not None
    pending = b""
    while data := await stream.read(4096):
        lines = (pending + data).split(b"\n")
        pending = lines.pop()[-4096:]
        for line in lines:
            keep(line, tail, what)
    keep(pending, tail, what)


def keep(line: bytes, tail: deque[str], what: str) -> None:
    text = line.decode("utf-8", "replace").strip()
    if text:
        log.debug("%s: %s", what, text[:500])
        tail.append(text[:500])
