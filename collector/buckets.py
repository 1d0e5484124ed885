"""Cut a stream of timed samples into buckets by each sample's own time.

Buckets are aligned on the wall clock (``[k * size, (k + 1) * size)`` in unix
seconds), whatever clock the samples are stamped with: ``offset`` turns a
sample's time into wall time (for perf's ``CLOCK_MONOTONIC`` stamps, the wall
clock minus the monotonic clock). Each bucket folds its samples in its own
collapser. A bucket is complete when a sample of a later bucket arrives, or
when the clock has passed its end by ``grace`` (an idle target sends nothing
that would close it). A sample of a bucket already handed out is not lost: it
is folded into a late part of that bucket, handed out at the next ``advance()``
with the same start and end, for the daemon to merge into the bucket it has.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from flamed.collapse.folded import Folded

MAX_OPEN = 64
"""Buckets, and late parts, held at once beyond this many: the oldest are handed out."""
MAX_LATE = 3600.0
"""Seconds a sample may be older than the clock and still go to its own bucket; older
stamps (and stamps in the future) go to the bucket of the moment they were read."""


class Collapser(Protocol):
    samples: int
    bytes_fed: int

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> Folded: ...


class Part:
    """One bucket, or a late part of one, being filled."""

    __slots__ = ("collapser", "index", "late")

    def __init__(self, index: int, collapser: Collapser, late: bool) -> None:
        self.index = index
        self.collapser = collapser
        self.late = late


class BucketCutter:
    """Routes timed data to the bucket of its time; hands out each bucket once complete.

    ``emit(part, start, end)`` receives every completed bucket and every late
    part (``part.late``), with its wall-clock range.
    """

    def __init__(
        self,
        size: float,
        *,
        offset: float,
        grace: float,
        new_collapser: Callable[[], Collapser],
        emit: Callable[[Part, float, float], None],
    ) -> None:
        self.size = size
        self.offset = offset
        self.grace = grace
        self.new_collapser = new_collapser
        self.emit = emit
        self.open: dict[int, Part] = {}
        """Buckets not handed out yet, by index."""
        self.late: dict[int, Part] = {}
        """Late parts of buckets already handed out, by index."""
        self.done_below: int | None = None
        """Every bucket below this index has been handed out."""

    def index(self, when: float | None, now: float) -> int:
        """The bucket of a sample stamped ``when`` (None: unknown) and read at ``now``."""
        if when is None or not now - MAX_LATE <= when <= now + self.size:
            when = now
        return math.floor((when + self.offset) / self.size)

    def add(self, index: int, data: bytes) -> None:
        """Fold ``data`` (whole records of one bucket) into bucket ``index``."""
        if self.done_below is not None and index < self.done_below:
            self._late_part(index).collapser.feed(data)
            return
        part = self.open.get(index)
        if part is None:
            if len(self.open) >= MAX_OPEN:
                oldest = min(self.open)
                self._close(lambda open_index: open_index == oldest)
            part = self.open[index] = Part(index, self.new_collapser(), late=False)
        before = part.collapser.samples
        part.collapser.feed(data)
        if part.collapser.samples > before:
            self._close(lambda open_index: open_index < index)

    def advance(self, now: float) -> None:
        """Hand out buckets whose end is ``grace`` behind ``now`` and every late part."""
        self._flush_late()
        limit = math.floor((now - self.grace + self.offset) / self.size)
        self._close(lambda index: index < limit)

    def close_all(self) -> None:
        """Hand out everything held (the session ends)."""
        self._flush_late()
        self._close(lambda index: True)

    def _late_part(self, index: int) -> Part:
        part = self.late.get(index)
        if part is None:
            if len(self.late) >= MAX_OPEN:
                self._flush_late()
            part = self.late[index] = Part(index, self.new_collapser(), late=True)
        return part

    def _close(self, which: Callable[[int], bool]) -> None:
        for index in sorted(index for index in self.open if which(index)):
            part = self.open.pop(index)
            if self.done_below is None or index >= self.done_below:
                self.done_below = index + 1
            self._emit(part)

    def _flush_late(self) -> None:
        parts, self.late = self.late, {}
        for part in parts.values():
            self._emit(part)

    def _emit(self, part: Part) -> None:
        start = part.index * self.size
        self.emit(part, start, start + self.size)
