"""perf script's text stream, cut at its records, each sent to the bucket of its own time.

With ``-F comm,pid,tid,time,period,event,ip,sym,dso`` every record starts with
an event line at the start of a line (``comm pid/tid time: period event:``),
its frames follow indented, and a blank line ends it. ``--show-lost-events``
adds one line per loss (``comm pid/tid time: PERF_RECORD_LOST lost N``) right
before a record; it is counted and not folded. Runs of records of one bucket
go to ``BucketCutter.add`` in one piece, so the collapser sees big feeds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

from flamed.collector.buckets import BucketCutter

# The event line up to its time: the last ` pid/tid time: ` on the line, since the
# command name before it may hold spaces, digits and colons.
HEAD = re.compile(rb"^\S[^\n]* \d+/\d+ +(\d+\.\d+): ", re.MULTILINE)
LOST = b"PERF_RECORD_LOST lost "
MAX_PENDING = 4 << 20
"""Bytes held without a blank line before complete lines are cut anyway (bounds memory)."""


class PerfRecords:
    """Feed it perf script's stdout in pieces of any size; ``finish()`` at its end."""

    def __init__(
        self,
        cutter: BucketCutter,
        *,
        on_lost: Callable[[int], None] = lambda count: None,
        clock: Callable[[], float] = time.monotonic,
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
        now = self.clock()
        start, index, keep = 0, None, True  # the run being gathered: its bucket, kept or not
        for found in HEAD.finditer(text):
            at = found.start()
            if text.startswith(LOST, found.end()):
                self._add(keep, index, text[start:at], now)
                start, index, keep = self._skip_lost(text, found.end()), None, True
                continue
            when = float(found.group(1))
            this_keep = self.since <= when < self.until
            this = self.cutter.index(when, now) if this_keep else None
            if (this_keep, this) != (keep, index):
                self._add(keep, index, text[start:at], now)
                start, index, keep = at, this, this_keep
        self._add(keep, index, text[start:], now)

    def _add(self, keep: bool, index: int | None, run: bytes, now: float) -> None:
        if not run or not keep:
            return
        if index is None:  # text before any event line: the bucket of the moment it came
            index = self.cutter.index(None, now)
        self.cutter.add(index, run)

    def _skip_lost(self, text: bytes, at: int) -> int:
        """Count a LOST line's number; the offset after the line."""
        end = text.find(b"\n", at)
        end = len(text) if end < 0 else end
        number = text[at + len(LOST) : end].strip()
        if number.isdigit():
            self.on_lost(int(number))
        return end + 1
