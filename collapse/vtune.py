"""Collapse Intel VTune top-down CSV into folded stacks, as inferno-collapse-vtune does.

The input is what ``vtune -report top-down -call-stack-mode all -column="CPU
Time:Self","Module" -report-output out.csv -format csv -csv-delimiter comma``
writes (``amplxe-cl`` in older releases): a header line ``Function Stack,CPU
Time:Self,Module``, then one line per node of the call tree, indented one space
per level, with its own CPU time in seconds::

    Function Stack,CPU Time:Self,Module
    Total,0.0,[Unknown]
     main,0.012,app
      "std::vector<int>::push_back",0.5,app

Each node with CPU time of its own counts it in milliseconds, rounded, under
the stack ``module`function;...`` (``--no-modules``: functions alone). A name
with a comma or a space is in double quotes. Lines before the header are
skipped.

FlameGraph's stackcollapse-vtune.pl reads only the VTune 2013/2015 export (and
as published does not compile: ``$func`` is undeclared under ``use strict``),
so inferno is the reference. Beyond inferno: a line that cannot be read is
skipped with a warning instead of ending the collapse, a node that appears
twice under the same stack counts twice (inferno keeps the last one), and a
byte-order mark before the header is ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from flamed.collapse.folded import decode
from flamed.collapse.lines import LineCollapser

HEADER = b"Function Stack,CPU Time:Self,Module"
# What Rust's f64 parser accepts, no more (Python's float() also takes "1_0" and spaces).
FLOAT = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.I)


@dataclass(frozen=True)
class VTuneOptions:
    """Options of ``flamed collapse vtune``."""

    modules: bool = True
    """Prefix each function with its module, ``libc.so.6`malloc`` (``--no-modules``: off)."""


def milliseconds(text: bytes) -> int | None:
    """Seconds as text to whole milliseconds, rounded half away from zero; None if not a number.

    As Rust's ``(t * 1000.0).round() as u64``: negative and NaN give 0."""
    if FLOAT.fullmatch(text) is None:
        return None
    value = float(text) * 1000.0
    if math.isnan(value) or value <= 0:
        return 0
    if math.isinf(value):
        return None
    whole = math.floor(value)
    return whole + 1 if value - whole >= 0.5 else whole


class VTuneCollapser(LineCollapser):
    """Streaming: ``feed()`` VTune CSV split anywhere, then ``finish()``."""

    def __init__(self, options: VTuneOptions | None = None) -> None:
        super().__init__()
        self.options = options or VTuneOptions()
        self.in_table = False
        self.stack: list[str] = []

    def on_line(self, line: bytes) -> None:
        if not self.in_table:
            self.in_table = line.startswith(HEADER)
            return
        line = line.rstrip()
        if not line:
            return
        depth = len(line) - len(line.lstrip(b" "))
        if depth > len(self.stack):
            self.warn("VTune line that skips an indentation level (skipped)", decode(line))
            return
        parts = self._parts(line[depth:])
        if parts is None:
            self.warn("VTune line without function, CPU time and module (skipped)", decode(line))
            return
        func, time, module = parts
        count = milliseconds(time)
        if count is None:
            self.warn("VTune line whose CPU time is not a number (skipped)", decode(line))
            return
        del self.stack[depth:]
        self.stack.append(decode(module + b"`" + func if module else func))
        if count > 0:
            self.add(";".join(self.stack), count)

    def on_end(self) -> None:
        if not self.in_table:
            self.warn("no VTune header line (Function Stack,CPU Time:Self,Module) found", "")

    def _parts(self, line: bytes) -> tuple[bytes, bytes, bytes] | None:
        """Function, CPU time and module of a line without its indentation."""
        if line.startswith(b'"'):
            func, comma, rest = line[1:].partition(b'",')
        else:
            func, comma, rest = line.partition(b",")
        time, comma2, module = rest.partition(b",")
        if not comma or (self.options.modules and not comma2):
            return None
        return func, time, module if self.options.modules else b""


def is_applicable(head: bytes) -> bool | None:
    """VTune's CSV header on the first line."""
    first, newline, _ = head.removeprefix(b"\xef\xbb\xbf").partition(b"\n")
    return first.startswith(HEADER) if newline else None
