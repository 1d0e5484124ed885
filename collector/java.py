"""Asking a target's JVMs to write their perf map (``java_perfmap = true``).

HotSpot (JDK 17 and later) writes ``/tmp/perf-PID.map`` when asked through its
attach mechanism (what ``jcmd PID Compiler.perfmap`` does): a whole new map of
the code cache as it is at that moment, in the JVM's own ``/tmp``, where
``flamed.collector.perfmap`` reads it. flamed speaks the attach protocol itself
(``flamed.collector.attach``: no jcmd JVM to start, through ``/proc/PID/root``
and ``NSpid`` for a JVM in a container). Methods compiled after the last
request stay unnamed until the next one, so the session asks when sampling
starts and again every ``EVERY_BUCKETS`` buckets: at most ``MAX_JVMS`` at once,
each bounded by ``TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from flamed.collector.attach import AttachError, jvm_command

log = logging.getLogger("flamed.collector")

EVERY_BUCKETS = 3
MAX_JVMS = 8
TIMEOUT = 20.0


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
    """Asks the JVMs among a target's processes to write their perf map."""

    def __init__(self, proc_root: Path, name: str = "") -> None:
        self.proc_root = proc_root
        self.name = name
        self.requests = 0
        """Maps the JVMs said they wrote."""
        self.failures = 0
        self._warned = False

    async def write(self, pids: tuple[int, ...]) -> None:
        """Ask each JVM among ``pids`` (MAX_JVMS at most) to write its map; never raises."""
        jvms = [pid for pid in pids if is_jvm(self.proc_root, pid)][:MAX_JVMS]
        await asyncio.gather(*(self._ask(pid) for pid in jvms))

    async def _ask(self, pid: int) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                await jvm_command(self.proc_root, pid, "Compiler.perfmap")
        except TimeoutError:
            self._failed(pid, f"no answer in {TIMEOUT:g} s")
        except (AttachError, OSError) as err:
            self._failed(pid, str(err) if isinstance(err, AttachError) else err.strerror or "")
        else:
            self.requests += 1

    def _failed(self, pid: int, detail: str) -> None:
        self.failures += 1
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        who = f"{self.name}: " if self.name else ""
        log.log(level, "%sasking JVM %d for its perf map failed: %s", who, pid, detail)
