"""perf script's text stream, cut at its records, each sent to the bucket of its own time.

With ``-F comm,pid,tid,time,period,event,ip,sym,dso`` every record starts with
an event line at the start of a line (``comm pid/tid time: period event:``),
its frames follow indented, and a blank line ends it. ``--show-lost-events``
adds one line per loss (``comm pid/tid time: PERF_RECORD_LOST lost N``) right
before a record; it is counted and not folded. Runs of records of one bucket
go to ``BucketCutter.add`` in one piece, so the collapser sees big feeds.
Where the C speedups are built (and not turned off by ``FLAMED_NO_EXTENSIONS=1``),
their ``perf_cut_runs`` finds the runs; ``cut_runs`` here is the reference.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

from flamed.collapse import speedups
from flamed.collector.buckets import MAX_LATE, BucketCutter

# The event line up to its time: the last ` pid/tid time: ` on the line, since the
# command name before it may hold spaces, digits and colons.
HEAD = re.compile(rb"^\S[^\n]* \d+/\d+ +(\d+\.\d+): ", re.MULTILINE)
LOST = b"PERF_RECORD_LOST lost "
MAX_PENDING = 4 << 20
"""Bytes held without a blank line before complete lines are cut anyway (bounds memory)."""
Run = tuple[int, int, int]
"""``text[start:end]`` goes to bucket ``index``."""
NativeCut = Callable[[bytes, float, float, float, float, float, float], tuple[list[Run], list[int]]]
"""``_speedups.perf_cut_runs(text, now, size, offset, max_late, since, until)``."""


class PerfRecords:
    """Feed it perf script's stdout in pieces of any size; ``finish()`` at its end."""

    def __init__(
        self,
        cutter: BucketCutter,
        *,
        on_lost: Callable[[int], None] = lambda count: None,
        clock: Callable[[], float] = time.monotonic,
        native: bool | None = None,
    ) -> None:
        self.cutter = cutter
        self.on_lost = on_lost
        """Told how many samples perf lost (its ring buffer was full), at each LOST line."""
        self.clock = clock
        self.since = -math.inf
        self.until = math.inf
        """Records stamped outside [since, until) are skipped: two pipelines hand over at a
        moment, each keeping its side of it."""
        self._pending = b""
        module = speedups.choose(native)
        self._native: NativeCut | None = None if module is None else module.perf_cut_runs

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n\n") + 2
        if end < 2 and len(buffer) > MAX_PENDING:
            end = buffer.rfind(b"\n") + 1
        if end < 2:
            self._pending = buffer
            return
        self._pending = buffer[end:]
        self._split(buffer[:end])

    def finish(self) -> None:
        """The stream ended: what is left is a last record (or a fragment of one)."""
        if self._pending:
            pending, self._pending = self._pending, b""
            self._split(pending if pending.endswith(b"\n") else pending + b"\n")

    def _split(self, text: bytes) -> None:
        cutter, now = self.cutter, self.clock()
        if self._native is None:
            runs, lost = cut_runs(text, cutter, now, self.since, self.until)
        else:
            window = (now, cutter.size, cutter.offset, MAX_LATE, self.since, self.until)
            runs, lost = self._native(text, *window)
        for count in lost:
            self.on_lost(count)
        for start, end, index in runs:
            cutter.add(index, text[start:end])


def cut_runs(
    text: bytes, cutter: BucketCutter, now: float, since: float, until: float
) -> tuple[list[Run], list[int]]:
    """Complete lines of perf script text cut into runs of records of one bucket each (the
    bucket of each record's time, read at ``now``; text before any event line, or after a
    LOST line, is of the bucket of ``now``), and each LOST line's count. Records stamped
    outside [since, until) are left out. The reference of the C ``perf_cut_runs``, which
    takes the cutter's numbers (``now, size, offset, MAX_LATE, since, until``) instead."""
    runs: list[Run] = []
    lost: list[int] = []
    moment = cutter.index(None, now)
    start = 0  # the run being gathered, from here, and its bucket (None: left out)
    index: int | None = moment
    for found in HEAD.finditer(text):
        at = found.start()
        if text.startswith(LOST, found.end()):
            _add(runs, start, at, index)
            start, count = lost_line(text, found.end())
            if count is not None:
                lost.append(count)
            index = moment
            continue
        when = float(found.group(1))
        this = cutter.index(when, now) if since <= when < until else None
        if this != index:
            _add(runs, start, at, index)
            start, index = at, this
    _add(runs, start, len(text), index)
    return runs, lost


def _add(runs: list[Run], start: int, end: int, index: int | None) -> None:
    if end > start and index is not None:
        runs.append((start, end, index))


def lost_line(text: bytes, at: int) -> tuple[int, int | None]:
    """The offset after a LOST line whose number starts at ``at``, and that number (None
    if it is not one)."""
    end = text.find(b"\n", at)
    end = len(text) if end < 0 else end
    number = text[at + len(LOST) : end].strip()
    return end + 1, int(number) if number.isdigit() else None
