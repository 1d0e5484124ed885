"""perf script text as flamed's pipeline prints it, and a cutter that keeps what it hands out.

The record layout is perf 6.1's for ``-F comm,pid,tid,time,period,event,ip,sym,dso``
with a call chain, as seen on the test machine (an event line, tab-indented
frames, a blank line); LOST lines are ``--show-lost-events``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from flamed.collapse.folded import Folded
from flamed.collapse.perf import PerfCollapser, PerfOptions
from flamed.collector.buckets import BucketCutter, Part


def record(when: float, frames: tuple[str, ...] = ("work", "main"), comm: str = "burn") -> bytes:
    lines = [f"{comm} 4242/4242 {when:12.6f}:    1001001 cpu-clock: "]
    lines += [f"\t    {0x1180 + i:12x} {frame} (/opt/burn)" for i, frame in enumerate(frames)]
    return ("\n".join(lines) + "\n\n").encode()


def lost(when: float, count: int, comm: str = "burn") -> bytes:
    return f"{comm} 4242/4242 {when:12.6f}: PERF_RECORD_LOST lost {count}\n".encode()


@dataclass
class Handed:
    start: float
    end: float
    folded: Folded
    late: bool


class Kept:
    """A cutter (10 s buckets, wall = stamp + 1000) whose handed-out buckets are listed."""

    def __init__(self, size: float = 10.0, offset: float = 1000.0, grace: float = 2.0) -> None:
        self.handed: list[Handed] = []
        self.cutter = BucketCutter(
            size, offset=offset, grace=grace, new_collapser=self.collapser, emit=self.emit
        )

    @staticmethod
    def collapser() -> PerfCollapser:
        return PerfCollapser(PerfOptions(period_weights=False))

    def emit(self, part: Part, start: float, end: float) -> None:
        self.handed.append(Handed(start, end, part.collapser.finish(), part.late))

    def ranges(self) -> list[tuple[float, float, bool]]:
        return [(h.start, h.end, h.late) for h in self.handed]
