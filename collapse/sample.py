"""Collapse macOS ``sample`` reports into folded stacks, as stackcollapse-sample.awk does.

``sample PID -file out.txt`` writes a header, then a call tree after the line
``Call graph:``; each node is a line of four spaces, two indentation characters
per level (`` ``, ``+``, ``!``, ``:``, ``|``), the node's sample count and the
function, with its library as ``(in libfoo.dylib)``::

    Call graph:
        2799 Thread_7404543   DispatchQueue_1: com.apple.main-thread  (serial)
        + 2799 start  (in libdyld.dylib) + 1  [0x7fff6e1a23d5]
        +   2799 main  (in Safari) + 0  [0x10a5f3f90]
    Total number in stack (recursive counted multiple times):

Each node counts the samples it holds itself: its count less its children's,
as the awk script does (so a caller that ran code of its own shows it, and a
node whose time all went to callees counts 0). A frame is ``library`function``
(``.dylib`` dropped; ``--no-modules``: the function alone). As in the awk
script, the second word after the count joins the first with a dot when it is
not ``(in`` (``-[NSView display]`` becomes ``-[NSView.display]``), and a thread
whose leaf is one of a few waiting functions (``mach_msg_trap``, ``__psynch_cvwait``,
...) is left out, with its callers' own samples at that point.

Beyond the awk script: a line whose indentation is odd or skips a level is
skipped with a warning (the script files it under a level that is never
printed), a call graph cut short still counts what it holds, and a second
call graph in the same input starts afresh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flamed.collapse.folded import decode
from flamed.collapse.lines import LineCollapser

# A node line: four spaces, indentation (anything but digits), then the count.
NODE = re.compile(rb"    ([^0-9]*)([0-9]+)")
MODULE = re.compile(rb"\(in [^)]*\)")
# Threads waiting in these are left out, with or without their library's name.
WAITING = (
    "__psynch_cvwait",
    "__select",
    "__semwait_signal",
    "__ulock_wait",
    "__wait4",
    "__workq_kernreturn",
    "kevent",
    "mach_msg_trap",
    "read",
    "semaphore_wait_trap",
)
IGNORED = frozenset([*WAITING, *(f"libsystem_kernel`{name}" for name in WAITING)])


@dataclass(frozen=True)
class SampleOptions:
    """Options of ``flamed collapse sample``."""

    modules: bool = True
    """Prefix each function with its library, ``AppKit`NSApplicationMain``
    (``--no-modules`` turns it off, as ``MODULES=0`` does for the awk script)."""


class SampleCollapser(LineCollapser):
    """Streaming: ``feed()`` ``sample`` output split anywhere, then ``finish()``."""

    def __init__(self, options: SampleOptions | None = None) -> None:
        super().__init__()
        self.options = options or SampleOptions()
        self.in_graph = False
        self.names: list[str] = []  # the current path, one name per level
        self.times: list[int] = []  # each level's count less its children's so far

    def on_line(self, line: bytes) -> None:
        if line.startswith(b"Call graph"):
            self._flush(0)
            self.in_graph = True
        elif line.startswith(b"Total number"):
            self.in_graph = False
            self._flush(0)
        elif self.in_graph:
            found = NODE.match(line)
            if found is not None:
                self._node(line, found)

    def on_end(self) -> None:
        if self.in_graph and self.names:
            self.warn("input ends inside the call graph (its stacks are counted)", "")
        self._flush(0)

    def _node(self, line: bytes, found: re.Match[bytes]) -> None:
        indent = len(found.group(1))
        depth = indent // 2
        if indent % 2 or depth > len(self.names):
            self.warn("call graph line with odd or skipped indentation (skipped)", decode(line))
            return
        rest = line[found.start(2) :]
        count = int(found.group(2))
        self._flush(depth)
        self.names.append(self._name(rest))
        self.times.append(count)
        if depth:
            self.times[depth - 1] -= count

    def _name(self, rest: bytes) -> str:
        """The node's frame: ``library`function``, as the awk script builds it."""
        words = rest.split()
        name = words[1] if len(words) > 1 else b""
        if len(words) > 2 and words[2] != b"(in":
            name += b"." + words[2]
        module = MODULE.search(rest) if self.options.modules else None
        if module is not None:
            name = module.group()[4:-1].replace(b".dylib", b"") + b"`" + name
        return decode(name)

    def _flush(self, depth: int) -> None:
        """Count the path's levels from the leaf down to ``depth`` and drop them."""
        if len(self.names) <= depth:
            return
        counted = self.names[-1] not in IGNORED
        while len(self.names) > depth:
            if counted:
                self.add(";".join(self.names), self.times[-1])
            self.names.pop()
            self.times.pop()


def is_applicable(head: bytes) -> bool | None:
    """A ``sample`` report: its first line, then ``Call graph:`` and a node line."""
    lines = head.split(b"\n")[:-1]
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        return None
    if not first.startswith((b"Analysis of sampling", b"Call graph")):
        return False
    for index, line in enumerate(lines[:-1]):
        if line.startswith(b"Call graph") and NODE.match(lines[index + 1]):
            return True
    return None if len(head) < 64 * 1024 else False
