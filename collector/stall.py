"""Telling a stuck perf pipeline from an idle target.

A pipeline that writes nothing is fine while its target does not run: perf
has nothing to sample. It is stuck when it writes nothing for ``limit``
seconds while one of its processes is stopped (SIGSTOP), or while the target
used enough CPU for perf to have taken more samples than its buffers can hold
without writing a byte (``patience``; perf writes when a ring is half full, so
a quiet pipeline is normal for a while at a low rate). Looked at
once a bucket; a gap of more than two looks means flamed itself did not run
(stopped, or its event loop blocked), and the quiet spell starts again, so
perf is not blamed for flamed's own stall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from flamed.collector.procfs import stopped, target_cpu
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
        self.baseline: float | None = None
        """The target's CPU seconds when the quiet spell was first seen."""

    def check(self, output: int, children: dict[str, int], resolution: Resolution) -> str | None:
        """``output``: bytes the pipeline wrote so far; ``children``: name -> pid."""
        now = self.clock()
        if output != self.output or now - self.checked > 2 * self.interval:
            self.output, self.quiet_since, self.checked = output, now, now
            self.baseline = None
            return None
        self.checked = now
        if self.baseline is None:
            self.baseline = target_cpu(resolution, self.proc_root)
            return None
        quiet = now - self.quiet_since
        if quiet < self.limit:
            return None
        halted = [name for name, pid in children.items() if stopped(self.proc_root, pid)]
        if halted:
            return f"{' and '.join(halted)} stopped, no output for {quiet:.0f} s"
        used = target_cpu(resolution, self.proc_root) - self.baseline
        if used * self.frequency > self.patience:
            return f"no output for {quiet:.0f} s while the target ran {used:.1f} s of CPU"
        return None
