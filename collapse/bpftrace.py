"""Collapse bpftrace stack maps into folded stacks, as stackcollapse-bpftrace.pl does.

``bpftrace -e 'profile:hz:99 { @[kstack, ustack, comm] = count(); }'`` prints,
when it exits, one entry per distinct key: ``@[``, the key's stacks one frame
per indented line (leaf first, a ``,`` line between two stacks), then the last
key element and the count::

    @[
        do_syscall_64+113
        entry_SYSCALL_64_after_hwframe+118
    ,
        __GI___libc_open+81
    , python3]: 7

Each entry counts its count under its frames in reverse (``python3;...;do_syscall_64+113``:
the command, the user stack root first, then the kernel stack), frames as
bpftrace prints them. Single-stack maps (``@[kstack] = count()``) read the same.

Beyond the Perl script: an entry whose first stack is empty (``@[, `` then the
user stack: it skips those), or whose stacks are all empty (``@[, , comm]: 1``,
``@[comm]: 1``), counts; the ``,`` between two stacks is not made a frame
(it printed ``;, ;``); and a named map (``@stacks[``) reads as ``@[`` does.
"""

from __future__ import annotations

import re

from flamed.collapse.folded import decode
from flamed.collapse.lines import LineCollapser

# The first line of an entry: `@[` and, when the first stack is empty, `, `.
ENTRY_START = re.compile(rb"@\w*\[(?:,\s?)?")
# The last line of an entry: the last key element and the count.
ENTRY_END = re.compile(rb",?\s?(.*)\]: (\d+)")
# A whole entry on one line: `@[, , comm]: 3`, `@[comm]: 3`.
ONE_LINE = re.compile(rb"@\w*\[(.*)\]: (\d+)")
SEPARATOR = re.compile(rb"\s*,?\s*")


class BpftraceCollapser(LineCollapser):
    """Streaming: ``feed()`` bpftrace output split anywhere, then ``finish()``."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] | None = None  # inside an entry: its frames so far

    def on_line(self, line: bytes) -> None:
        if self.frames is None:
            self._outside(line)
            return
        end = ENTRY_END.match(line)
        if end is not None:
            if end.group(1):
                self.frames.append(end.group(1))
            self._count(self.frames, end.group(2))
            self.frames = None
        elif not SEPARATOR.fullmatch(line):
            self.frames.append(line.lstrip())

    def on_end(self) -> None:
        if self.frames is not None:
            self.warn("input ends inside a bpftrace map entry (entry skipped)", "")

    def _outside(self, line: bytes) -> None:
        if ENTRY_START.fullmatch(line):
            self.frames = []
            return
        one = ONE_LINE.match(line)
        if one is not None:
            keys = [key for key in one.group(1).split(b", ") if key.strip(b", ")]
            self._count(keys, one.group(2))

    def _count(self, frames: list[bytes], count: bytes) -> None:
        if frames:
            self.add(decode(b";".join(reversed(frames))), int(count))
        else:
            self.warn("bpftrace map entry without frames (skipped)", "")


def is_applicable(head: bytes) -> bool | None:
    """bpftrace's output: ``Attaching N probes...``, blank lines, then a map entry."""
    for line in head.split(b"\n")[:-1]:
        if not line.strip() or line.startswith(b"Attaching "):
            continue
        return bool(ENTRY_START.fullmatch(line) or ONE_LINE.match(line))
    return None
