"""Asking a target's JVMs to write their perf map (``java_perfmap = true``).

HotSpot (JDK 17 and later) writes ``/tmp/perf-PID.map`` when asked through its
attach mechanism: ``jcmd PID Compiler.perfmap``, a whole new map of the code
cache as it is at that moment. ``jcmd`` finds a JVM in a container or under
another ``/tmp`` by itself (through ``/proc/PID/root`` and ``NSpid``), and the
map lands in the JVM's own ``/tmp``, where ``flamed.collector.perfmap`` reads
it. Methods compiled after the last request stay unnamed until the next one,
so the session asks when sampling starts and again every ``EVERY_BUCKETS``
buckets. Each ``jcmd`` is itself a small JVM (about 0.3 s of CPU): at most
``MAX_JVMS`` are asked at once, each bounded by ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from flamed.collector.children import kill_group

log = logging.getLogger("flamed.collector")

EVERY_BUCKETS = 3
MAX_JVMS = 8
TIMEOUT = 20.0
OUTPUT_BYTES = 4096


def is_jvm(proc_root: Path, pid: int) -> bool:
    """Does ``pid`` run a HotSpot JVM (its executable is ``java``, or it maps libjvm.so)?"""
    try:
        if os.path.basename(os.readlink(proc_root / str(pid) / "exe")) == "java":
            return True
    except OSError:
        return False
    return maps_libjvm(proc_root, pid)


def maps_libjvm(proc_root: Path, pid: int) -> bool:
    """A JVM embedded in another executable (a launcher): libjvm.so among its mappings."""
    try:
        with open(proc_root / str(pid) / "maps", "rb") as maps:
            return any(line.rstrip().endswith(b"/libjvm.so") for line in maps)
    except OSError:
        return False


class PerfMapWriter:
    """Runs ``jcmd PID Compiler.perfmap`` for the JVMs among a target's processes."""

    def __init__(
        self,
        jcmd: str,
        proc_root: Path,
        wrapper: tuple[str, ...] = (),
        name: str = "",
    ) -> None:
        self.jcmd = jcmd
        self.proc_root = proc_root
        self.wrapper = wrapper
        self.name = name
        self.requests = 0
        """Maps asked for that jcmd reported written."""
        self.failures = 0
        self._warned = False

    async def write(self, pids: tuple[int, ...]) -> None:
        """Ask each JVM among ``pids`` (MAX_JVMS at most) to write its map; never raises."""
        jvms = [pid for pid in pids if is_jvm(self.proc_root, pid)][:MAX_JVMS]
        await asyncio.gather(*(self._ask(pid) for pid in jvms))

    async def _ask(self, pid: int) -> None:
        argv = [*self.wrapper, self.jcmd, str(pid), "Compiler.perfmap"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                process_group=0,
            )
        except OSError as err:
            self._failed(pid, f"cannot run {self.jcmd}: {err.strerror or err}")
            return
        try:
            output = await self._answer(proc)
        except TimeoutError:
            self._failed(pid, f"jcmd gave no answer in {TIMEOUT:g} s")
            return
        finally:
            if proc.returncode is None:  # timed out, or the session stopped asking
                kill_group(proc.pid, signal.SIGKILL)
                await asyncio.shield(proc.wait())
        text = output.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or "exception" in text.lower():
            last = text.splitlines()[-1] if text else f"exited {proc.returncode}"
            self._failed(pid, last[:300])
        else:
            self.requests += 1

    @staticmethod
    async def _answer(proc: asyncio.subprocess.Process) -> bytes:
        """The start of what jcmd printed (the rest read and dropped), once it exited."""
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            output = await proc.stdout.read(OUTPUT_BYTES)
            while await proc.stdout.read(1 << 16):
                pass
            await proc.wait()
        return output

    def _failed(self, pid: int, detail: str) -> None:
        self.failures += 1
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        who = f"{self.name}: " if self.name else ""
        log.log(level, "%sjcmd %d Compiler.perfmap failed: %s", who, pid, detail)
