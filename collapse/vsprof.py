"""Collapse Visual Studio profiler call-tree CSV into folded stacks.

Visual Studio exports a call tree as CSV: a header, then one line per node,
its depth first (``Level``), its function name second, then counts. Two exports
exist and the header tells them apart:

* a sampling profile (``Level,Function Name,Inclusive Samples,Exclusive
  Samples,...``), read as FlameGraph's stackcollapse-vsprof.pl reads it: each
  leaf counts its inclusive samples (the third column; ``8,735`` and ``8.735``
  are 8735), names lose their white space (``vector<int> >`` becomes
  ``vector<int>>``) and level 0 (the process) is left out;
* an instrumentation profile (``Level,Function Name,Number of Calls,...``), read
  as inferno-collapse-vsprof reads it: each node counts its calls less the
  calls it made (``"2,893,824"`` is 2893824), names are kept as written.

Beyond both: a line that cannot be read is skipped with a warning instead of
ending the collapse (each stops), a stack that appears twice counts twice
(inferno keeps the last one), the Perl script's empty `` 0`` line for an empty
file is not printed, and a byte-order mark is ignored.
"""

from __future__ import annotations

import re

from flamed.collapse.folded import decode
from flamed.collapse.lines import LineCollapser

CALLS_HEADER = (
    b"Level,Function Name,Number of Calls,Elapsed Inclusive Time %,Elapsed Exclusive Time %,"
    b"Avg Elapsed Inclusive Time,Avg Elapsed Exclusive Time,Module Name,"
)
# The Perl script's line: level, function name, samples (each quoted or not).
SAMPLES_LINE = re.compile(rb'\s*(\d+?),("[^"]+"|[^,]+),("[^"]+"|[^,]+),')
WHITE = re.compile(rb"\s+")
NOT_DIGITS = re.compile(rb"[., ]")
PERL_NUMBER = re.compile(rb"\s*([+-]?)(\d+)")
# A count as inferno reads it: groups of three digits after the first, one separator.
GROUPED = re.compile(rb"\d{1,3}(?:([,. ])\d{3}(?:\1\d{3})*)?|")
MAX_DEPTH = 1000


def unquoted(text: bytes) -> bytes:
    """``text`` without a double quote at its very start and one at its very end."""
    start = 1 if text[:1] == b'"' else 0
    end = len(text) - 1 if len(text) > start and text.endswith(b'"') else len(text)
    return text[start:end]


def massage_name(raw: bytes) -> str:
    """The Perl script's name: no white space anywhere, no quote at either end."""
    return decode(WHITE.sub(b"", unquoted(raw)))


def perl_integer(raw: bytes) -> int:
    """The Perl script's count: separators and end quotes removed, then Perl's int()."""
    found = PERL_NUMBER.match(NOT_DIGITS.sub(b"", unquoted(raw)))
    if found is None:
        return 0
    return -int(found.group(2)) if found.group(1) == b"-" else int(found.group(2))


def next_number(line: bytes) -> tuple[int, bytes] | None:
    """inferno's leading count of ``line`` (after one optional comma) and the rest."""
    line = line.removeprefix(b",")
    if line.startswith(b'"'):
        field, quote, rest = line[1:].partition(b'"')
        if not quote:
            return None
        rest = rest.removeprefix(b",")
    else:
        field, _, rest = line.partition(b",")
    if GROUPED.fullmatch(field) is None:
        return None
    return int(NOT_DIGITS.sub(b"", field) or b"0"), rest


class VsprofCollapser(LineCollapser):
    """Streaming: ``feed()`` a call-tree CSV split anywhere, then ``finish()``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: bool | None = None  # which export: None before the header
        self.stack: list[str] = []
        self.counts: list[int] = []  # per level: samples (Perl) or calls (inferno)

    def on_line(self, line: bytes) -> None:
        if self.calls is None:
            self.calls = line.strip().startswith(CALLS_HEADER)
        elif self.calls:
            self._calls_line(line.rstrip())
        elif line.strip():
            self._samples_line(line)

    def on_end(self) -> None:
        if self.calls:
            self._write()
        elif self.stack:
            self.add(";".join(self.stack), self.counts[-1])

    # -- sampling export, as stackcollapse-vsprof.pl ------------------------------------

    def _samples_line(self, line: bytes) -> None:
        found = SAMPLES_LINE.match(line)
        if found is None:
            self.warn("call-tree line without level, name and count (skipped)", decode(line))
            return
        level = int(found.group(1))
        if not level:
            return
        if not self._fits(level - 1, line):
            return
        if level <= len(self.stack):
            self.add(";".join(self.stack), self.counts[-1])
            del self.stack[level - 1 :], self.counts[level - 1 :]
        self.stack.append(massage_name(found.group(2)))
        self.counts.append(perl_integer(found.group(3)))

    def _fits(self, depth: int, line: bytes) -> bool:
        if depth > len(self.stack):
            self.warn("call-tree line that skips a level (skipped)", decode(line))
            return False
        if depth >= MAX_DEPTH:
            self.warn(f"call tree deeper than {MAX_DEPTH} levels (line skipped)", decode(line))
            return False
        return True

    # -- instrumentation export, as inferno-collapse-vsprof -----------------------------

    def _calls_line(self, line: bytes) -> None:
        if not line:
            return
        parts = self._calls_parts(line)
        if parts is None:
            self.warn("call-tree line without level, quoted name and calls (skipped)", decode(line))
            return
        depth, name, calls = parts
        if not self._fits(depth - 1, line):  # a level 0 replaces itself, as in inferno
            return
        if depth == len(self.stack):
            self._write()
            if self.stack:
                self._pop()
        elif depth < len(self.stack):
            self._unwind(len(self.stack) - depth + 1)
        self.stack.append(name)
        self.counts.append(calls)

    @staticmethod
    def _calls_parts(line: bytes) -> tuple[int, str, int] | None:
        level = next_number(line)
        if level is None or not level[1].startswith(b'"'):
            return None
        name, quote, rest = level[1][1:].partition(b'"')
        calls = next_number(rest) if quote else None
        return None if calls is None else (level[0], decode(name), calls[0])

    def _unwind(self, levels: int) -> None:
        """Leave ``levels`` nodes, writing each whose calls differ from its callee's,
        and take each callee's calls off its caller's, as inferno does."""
        callee = 0
        for _ in range(levels):
            if callee != self.counts[-1]:
                self._write()
            callee = self._pop()
            if not self.stack:
                break
            if callee < self.counts[-1]:
                self.counts[-1] -= callee

    def _pop(self) -> int:
        self.stack.pop()
        return self.counts.pop()

    def _write(self) -> None:
        if self.counts and self.counts[-1] > 0:
            self.add(";".join(self.stack), self.counts[-1])


def is_applicable(head: bytes) -> bool | None:
    """A Visual Studio call-tree header (``Level,Function Name,...``) on the first line."""
    first, newline, _ = head.removeprefix(b"\xef\xbb\xbf").partition(b"\n")
    return first.strip().startswith(b"Level,Function Name,") if newline else None
