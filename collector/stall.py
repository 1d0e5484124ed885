"""Telling a stuck perf pipeline from an idle target.

A pipeline that writes nothing is fine while its target does not run: perf
has nothing to sample. It is stuck when it writes nothing for ``limit``
seconds while

- perf record or perf script is stopped (SIGSTOP, a tracer), or
- perf record wrote into the pipe and perf script read nothing of it, or
- neither did anything while the target used enough CPU for perf to have
  taken more samples than it can hold without a byte of output (``patience``:
  unpinged, perf writes when a ring is half full, so a quiet pipeline is
  normal for a while at a low rate).

A perf script that reads is at work (a backlog after a stall, a big binary's
symbols to load), not stuck.

Looked at once a bucket; a gap of more than two looks means flamed itself did
not run (stopped, or its event loop blocked), and the quiet spell starts
again, so perf is not blamed for flamed's own stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flamed.collector.procfs import io_counter, stopped, target_cpu
from flamed.collector.targets import Resolution


class StallWatch:
    """Call ``check()`` once a bucket; it names the problem once the pipeline is stuck."""

    def __init__(
        self,
        limit: float,
        interval: float,
        frequency: int,
        proc_root: Path,
        patience: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.patience = patience
        self.interval = interval
        self.frequency = frequency
        self.proc_root = proc_root
        self.clock = clock
        self.output = 0
        self.quiet_since = self.checked = clock()
        self.baseline: Progress | None = None
        """Where things stood when the quiet spell was first seen."""

    def check(self, output: int, record: int, script: int, resolution: Resolution) -> str | None:
        """``output``: bytes the pipeline wrote so far; ``record``, ``script``: their pids."""
        now = self.clock()
        if output != self.output or now - self.checked > 2 * self.interval:
            self.output, self.quiet_since, self.checked = output, now, now
            self.baseline = None
            return None
        self.checked = now
        seen = progress(self.proc_root, record, script, resolution)
        if self.baseline is None:
            self.baseline = seen
            return None
        quiet = now - self.quiet_since
        if quiet < self.limit:
            return None
        return self._stuck(seen, record, script, quiet)

    def _stuck(self, seen: Progress, record: int, script: int, quiet: float) -> str | None:
        assert self.baseline is not None
        children = {"perf record": record, "perf script": script}
        halted = [name for name, pid in children.items() if stopped(self.proc_root, pid)]
        if halted:
            return f"{' and '.join(halted)} stopped, no output for {quiet:.0f} s"
        if seen.read != self.baseline.read:
            return None  # perf script is at work (a backlog, a big binary's symbols)
        if seen.written > self.baseline.written:
            return f"perf script read nothing perf record wrote for {quiet:.0f} s"
        used = seen.cpu - self.baseline.cpu
        if used * self.frequency > self.patience:
            return f"no output for {quiet:.0f} s while the target ran {used:.1f} s of CPU"
        return None


@dataclass(frozen=True)
class Progress:
    """The target's CPU seconds, bytes perf record wrote and perf script read, so far."""

    cpu: float
    written: int
    read: int


def progress(proc_root: Path, record: int, script: int, resolution: Resolution) -> Progress:
    return Progress(
        target_cpu(resolution, proc_root),
        io_counter(proc_root, record, "wchar"),
        io_counter(proc_root, script, "rchar"),
    )
