"""Merge direct recursion in folded stacks, as stackcollapse-recursive.pl does.

Input and output are folded stacks (``frame;frame COUNT``); a frame repeated
right after itself is kept once, so ``main;fib;fib;fib;add 3`` becomes
``main;fib;add 3`` and the stacks that now coincide are added up. Indirect
recursion (``a;b;a;b``) stays as it is.

Lines are read as the Perl script reads them: the count is the number after
the last run of white space, trailing empty frames are dropped, and a line
without a count, or whose stack is empty or ``0`` (false to Perl), is skipped.
Beyond the Perl script: CRLF line ends are accepted (it skips such lines), a
stack made of ``;`` alone is dropped (it printed one with no frame), and a
skipped line is warned about once.
"""

from __future__ import annotations

import re

from flamed.collapse.folded import Count, decode
from flamed.collapse.lines import LineCollapser

# `stack<white space>count`: as the Perl script's /^(.*)\s+?(\d+(?:\.\d*)?)$/.
LINE = re.compile(rb"(.*)\s+?(\d+(?:\.\d*)?)", re.DOTALL)


def merge_recursion(frames: list[str]) -> list[str]:
    """Keep one of each run of equal neighbouring frames."""
    merged: list[str] = []
    for frame in frames:
        if not merged or merged[-1] != frame:
            merged.append(frame)
    return merged


def parse_count(text: bytes) -> Count:
    return float(text) if b"." in text else int(text)


class RecursiveCollapser(LineCollapser):
    """Streaming: ``feed()`` folded text split anywhere, then ``finish()``."""

    def on_line(self, line: bytes) -> None:
        found = LINE.fullmatch(line)
        if found is None or found.group(1) in (b"", b"0"):
            if line.strip():
                self.warn("folded line without a count (skipped)", decode(line))
            return
        frames = decode(found.group(1)).split(";")
        while frames and not frames[-1]:  # as Perl's split: trailing empty fields go
            frames.pop()
        if frames:
            self.add(";".join(merge_recursion(frames)), parse_count(found.group(2)))
