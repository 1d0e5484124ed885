"""The streaming part of every line-oriented collapser: chunks in, complete lines out.

Reports such as VTune's CSV, GHC's ``.prof`` or macOS ``sample`` output are read
a line at a time by a small state machine. :class:`LineCollapser` cuts the fed
chunks into lines wherever the chunks were split, so any split gives the same
lines in the same order, and hands each one (without its newline) to
``on_line``. A line longer than ``MAX_LINE`` is skipped with a warning, however
it arrived, so memory stays bounded.
"""

from __future__ import annotations

from flamed.collapse.common import WarnOnce
from flamed.collapse.folded import Count, Folded

MAX_LINE = 4 << 20
BOM = b"\xef\xbb\xbf"


class LineCollapser:
    """Base class: subclasses implement ``on_line`` (and ``on_end`` if they hold state)."""

    def __init__(self) -> None:
        self.warn = WarnOnce()
        self.profile = Folded()
        self._pending = b""
        self._too_long = False  # inside a line longer than MAX_LINE: drop until its end
        self._first = True

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n")
        if end < 0:
            self._keep(buffer)
            return
        lines = buffer[:end].split(b"\n")
        self._pending = b""
        if self._too_long:  # the end of a line already found too long
            del lines[0]
            self._too_long = False
            self._warn_long()
        for line in lines:
            self._line(line)
        self._keep(buffer[end + 1 :])

    def finish(self) -> Folded:
        if self._too_long:
            self._warn_long()
        elif self._pending:
            self._line(self._pending)
        self._pending = b""
        self._too_long = False
        self.on_end()
        return self.profile

    def add(self, stack: str, count: Count) -> None:
        """Count ``stack``; zero counts are kept, as the reference tools print them.
        A stack with no text at all (one empty frame) cannot be written: skipped."""
        if not stack:
            self.warn("stack without a frame name (skipped)", "")
            return
        counts = self.profile.counts
        counts[stack] = counts.get(stack, 0) + count

    def on_line(self, line: bytes) -> None:
        raise NotImplementedError

    def on_end(self) -> None:
        """The input ended: fold whatever is still held."""

    def _keep(self, rest: bytes) -> None:
        if len(rest) > MAX_LINE:
            self._too_long = True
            rest = b""
        self._pending = rest

    def _line(self, line: bytes) -> None:
        if self._first:
            self._first = False
            line = line.removeprefix(BOM)
        if len(line) > MAX_LINE:
            self._warn_long()
            return
        self.on_line(line.removesuffix(b"\r"))

    def _warn_long(self) -> None:
        self.warn("line longer than 4 MiB (skipped)", "")
