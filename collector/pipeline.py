"""``perf record -o - | perf script -i -``: the two children of one sampling run.

Both start in process groups of their own behind the parent-death guard, with
a pipe between them that flamed does not keep open (so either one's death ends
the other: EOF for perf script, EPIPE for perf record). perf script's stdout
is read on the event loop as it comes and handed to a sink; the tails of both
stderrs are kept for error messages. ``stop()`` asks perf record to finish
(SIGINT: it writes what its buffers hold), lets perf script drain the pipe,
and kills whatever is left after the timeout; ``kill()`` does not ask.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping

from flamed.collector.children import kill_group, stop_group

log = logging.getLogger("flamed.collector")

STDERR_LINES = 20
READ_SIZE = 1 << 16


class Pipeline:
    """A started pair; ``ended`` completes when perf script's output has ended."""

    def __init__(
        self,
        record: asyncio.subprocess.Process,
        script: asyncio.subprocess.Process,
        sink: Callable[[bytes], None],
        name: str,
    ) -> None:
        self.record = record
        self.script = script
        self.name = name
        self.bytes_out = 0
        self.last_output = time.monotonic()
        self.record_errors: deque[str] = deque(maxlen=STDERR_LINES)
        self.script_errors: deque[str] = deque(maxlen=STDERR_LINES)
        self._tasks = [
            asyncio.create_task(read_lines(record, self.record_errors, f"{name}: perf record")),
            asyncio.create_task(read_lines(script, self.script_errors, f"{name}: perf script")),
        ]
        self.ended = asyncio.create_task(self._read_output(sink))

    async def _read_output(self, sink: Callable[[bytes], None]) -> None:
        stream = self.script.stdout
        assert stream is not None
        while data := await stream.read(READ_SIZE):
            self.bytes_out += len(data)
            self.last_output = time.monotonic()
            sink(data)

    async def stop(self, timeout: float) -> None:
        """SIGINT to perf record, perf script drains the pipe; SIGKILL past ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await stop_group(self.record, signal.SIGINT, timeout)
                await asyncio.shield(self.ended)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL both groups (a stopped process dies too), reap both, drain what is left."""
        for proc in (self.record, self.script):  # also what a leader left in its group
            kill_group(proc.pid, signal.SIGKILL)
        await asyncio.gather(self.record.wait(), self.script.wait())
        await asyncio.gather(self.ended, *self._tasks, return_exceptions=True)

    def failure(self) -> tuple[str, int | None, str]:
        """Which child failed, its exit code and stderr tail, once both have ended.

        perf script is blamed when it died by a signal or failed; otherwise perf record.
        """
        script_code = self.script.returncode
        if script_code is not None and script_code != 0:
            return "perf script", script_code, "\n".join(self.script_errors)
        return "perf record", self.record.returncode, "\n".join(self.record_errors)


async def start_pipeline(
    record_argv: list[str],
    script_argv: list[str],
    sink: Callable[[bytes], None],
    *,
    name: str,
    wrapper: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> Pipeline:
    """Start both children. OSError (perf missing, ...) propagates, nothing left running."""
    reading, writing = os.pipe()
    record: asyncio.subprocess.Process | None = None
    try:
        record = await _spawn([*wrapper, *record_argv], asyncio.subprocess.DEVNULL, writing, env)
        script = await _spawn([*wrapper, *script_argv], reading, asyncio.subprocess.PIPE, env)
    except BaseException:
        if record is not None:
            kill_group(record.pid, signal.SIGKILL)
            await record.wait()
        raise
    finally:
        os.close(reading)
        os.close(writing)
    return Pipeline(record, script, sink, name)


async def _spawn(
    argv: list[str], stdin: int, stdout: int, env: Mapping[str, str] | None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        process_group=0,
        env=env,
    )


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
