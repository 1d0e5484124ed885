"""Collapse GHC profiling reports (``.prof``) into folded stacks, as inferno-collapse-ghcprof does.

A program built with ``ghc -prof`` and run with ``+RTS -p`` (``-P`` adds the
ticks and bytes columns) writes ``PROGRAM.prof``. Its call tree follows the
header line ``COST CENTRE MODULE SRC no. entries %time %alloc %time %alloc
[ticks bytes]``, one cost centre per line, indented one space per level::

    COST CENTRE  MODULE  SRC            no. entries  %time %alloc   %time %alloc
    MAIN         MAIN    <built-in>     46        0    0.0    0.0   100.0  100.0
     main        Main    Main.hs:3:1-9  93        0   10.5    2.0    99.9   99.8

Every cost centre counts its own (individual) cost under ``Module.name;...``:
the individual ``%time`` in tenths of a percent by default, ``--ticks`` the
ticks column, ``--bytes`` the bytes column. Columns are found by their place
under the header, as inferno finds them. The tree ends at the first blank line.

FlameGraph has no script for this format: inferno is the reference. Beyond
inferno: a line that cannot be read is skipped with a warning instead of
ending the collapse.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from flamed.collapse.folded import decode
from flamed.collapse.lines import LineCollapser
from flamed.collapse.vtune import FLOAT

HEADER_WORDS = [b"COST", b"CENTRE", b"MODULE", b"SRC", b"no.", b"entries"]
HEADER_WORDS += [b"%time", b"%alloc", b"%time", b"%alloc"]
Source = Literal["time", "ticks", "bytes"]
COST = re.compile(FLOAT.pattern.decode("ascii"), re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class GhcProfOptions:
    """Options of ``flamed collapse ghcprof``."""

    source: Source = "time"
    """The cost each cost centre counts: ``time`` (individual %time, in tenths of a
    percent), ``ticks`` or ``bytes`` (``--time``, ``--ticks``, ``--bytes``)."""


def is_header(line: bytes) -> bool:
    return line.split()[: len(HEADER_WORDS)] == HEADER_WORDS


def word_at(line: str, column: int) -> str:
    """The first word at or after character ``column`` (as inferno reads a column)."""
    rest = line[column:].lstrip()
    end = next((i for i, char in enumerate(rest) if char.isspace()), len(rest))
    return rest[:end]


class GhcProfCollapser(LineCollapser):
    """Streaming: ``feed()`` a ``.prof`` report split anywhere, then ``finish()``."""

    def __init__(self, options: GhcProfOptions | None = None) -> None:
        super().__init__()
        self.options = options or GhcProfOptions()
        self.state = "header"  # then "gap" (the line after the header), "tree", "done"
        self.module_column = 0
        self.cost_column = 0
        self.stack: list[str] = []

    def on_line(self, line: bytes) -> None:
        if self.state == "header":
            if is_header(line):
                self._columns(decode(line))
        elif self.state == "gap":
            self.state = "tree"
        elif self.state == "tree":
            if line.rstrip():
                self._cost_centre(decode(line.rstrip()))
            else:
                self.state = "done"

    def on_end(self) -> None:
        if self.state == "header":
            self.warn("no GHC call tree header (COST CENTRE MODULE SRC no. entries ...)", "")

    def _columns(self, header: str) -> None:
        source = self.options.source
        self.module_column = header.find("MODULE")
        if source == "time":
            self.cost_column = header.find("%time")
        elif source in header:
            start = header.find(source)
            self.cost_column = len(header[:start].rstrip())
        else:
            self.warn(f"GHC report without a {source} column (run with +RTS -P)", header)
            self.state = "done"
            return
        self.state = "gap"

    def _cost_centre(self, line: str) -> None:
        depth = len(line) - len(line.lstrip(" "))
        if depth > len(self.stack):
            self.warn("GHC call tree line that skips a level (skipped)", line)
            return
        cost = self._cost(word_at(line, self.cost_column))
        if cost is None:
            self.warn("GHC call tree line whose cost is not a number (skipped)", line)
            return
        del self.stack[depth:]
        self.stack.append(f"{word_at(line, self.module_column)}.{word_at(line, 0)}")
        self.add(";".join(self.stack), cost)

    def _cost(self, text: str) -> int | None:
        """The cost as inferno's ``as u64`` makes it: truncated, negative and NaN 0."""
        if COST.fullmatch(text) is None:
            return None
        value = float(text) * (10.0 if self.options.source == "time" else 1.0)
        if math.isnan(value) or value <= 0:
            return 0
        return None if math.isinf(value) else int(value)


def is_applicable(head: bytes) -> bool | None:
    """A GHC report: its title line first, then the call tree's header line."""
    lines = head.split(b"\n")[:-1]
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        return None
    if b"Profiling Report" not in first and not is_header(first):
        return False
    if any(is_header(line) for line in lines):
        return True
    return None if len(head) < 64 * 1024 else False
