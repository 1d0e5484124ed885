"""Collapse DTrace ``stack()``/``ustack()`` aggregations into folded stacks (stackcollapse.pl).

DTrace prints an aggregation keyed on a stack as one block per stack: the
frames, leaf first, one per indented line (``module`function+0x1f``), then
the count on a line of its own, then a blank line::

    CPU     ID                    FUNCTION:NAME
      0  64091                        :tick-60s

                  unix`i86_mwait+0xd
                  unix`cpu_idle+0x114
                  1641

A stream may hold several dumps one after the other (``tick-10s { printa(@);
trunc(@); }``); each starts with header lines closed by a blank line.

The lines between blank lines form a *run*. In a run each count line closes a
stack of the frame lines before it. Lines of a run that no count closes are a
dump's header (skipped), or the first part of a stack that goes on after the
blank line: an aggregation keyed on ``stack(), ustack()`` prints the kernel
frames, a blank line, then the user frames and the count, and the two parts are
one stack (kernel frames above the user ones), as both reference tools read it.

Speed comes from caching: a run is folded once and the result reused whenever
the same run comes again; with the C speedups the runs are cut and looked up
without making a Python object for each.

Beyond the Perl script (see also ``DTraceOptions``): the header is whatever
precedes the first blank line, not three fixed lines, and later dumps' headers
are skipped too; Rust legacy-mangled names are tidied as the perf collapser
tidies them (as inferno does); a stack cut short at the end of the input is
dropped with a warning instead of being merged into nothing.
"""

from __future__ import annotations

from flamed.collapse import speedups
from flamed.collapse.common import (
    ASCII,
    MULTILINE,
    TYPE_CHECKING,
    LazyPatterns,
    WarnOnce,
    retire,
)
from flamed.collapse.folded import Folded, decode
from flamed.collapse.symbols import tidy_rust

if TYPE_CHECKING:
    import re
    from mmap import mmap
    from typing import ClassVar, TypeVar

    from flamed.collapse._speedups import RunFolder

    K = TypeVar("K")
    V = TypeVar("V")


class _Patterns(LazyPatterns):
    """The regular expressions of the pure-Python reader, compiled at first use: the C
    folder needs none of them for a plain aggregation (importing re cost ~5 ms of every
    start)."""

    COUNT_LINE: re.Pattern[bytes]
    BLANK_LINE: re.Pattern[bytes]
    HEADER_LINE: re.Pattern[str]
    NOT_A_FRAME: re.Pattern[bytes]
    SOURCES: ClassVar[dict[str, tuple[str | bytes, int]]] = {
        # The count that closes a stack: digits alone on a line (ASCII, as Perl on bytes).
        "COUNT_LINE": (rb"[ \t\r\f\v]*(\d+)[ \t\r\f\v]*", ASCII),
        "BLANK_LINE": (rb"[ \t\r\f\v]*", ASCII),
        # The lines DTrace prints before an aggregation when not run with -q:
        # `CPU     ID                    FUNCTION:NAME` and `  0  64091   :tick-60s`.
        "HEADER_LINE": (r"\s*(CPU\s+ID\s+FUNCTION:NAME|\d+\s+\d+\s+\S*:\S*)\s*$", ASCII),
        # A line that is not a frame: blank, or a count.
        "NOT_A_FRAME": (rb"^[ \t\r\f\v]*(\d+[ \t\r\f\v]*)?$", ASCII | MULTILINE),
    }


P = _Patterns()

# A header longer than this many unindented lines is not DTrace's (format guessing).
MAX_HEADER_LINES = 10
# Without a blank line in this much input, complete lines are folded anyway to bound memory.
MAX_PENDING = 4 << 20
# Caches are dropped when they reach this many entries, to bound memory
# (a run is a few hundred bytes, a line a few dozen).
RUN_CACHE_LIMIT = 20_000
LINE_CACHE_LIMIT = 100_000


class DTraceOptions:
    """Options of ``flamed collapse dtrace``, named as stackcollapse.pl names them.

    - ``include_offset``: keep each frame's ``+0x…`` offset, except the leaf's
      (``--includeoffset``). Unlike the Perl script, which cuts the whole stack at its
      last ``+`` and so loses frames when the leaf has no offset (FlameGraph issue 202),
      only the leaf frame's own offset is dropped; a C++ name keeps its offset after
      its argument list is cut.

    A plain class, not a dataclass: importing dataclasses costs ~10 ms of start-up,
    and start-up counts in every ``flamed collapse dtrace``.
    """

    __slots__ = ("include_offset",)

    def __init__(self, include_offset: bool = False) -> None:
        self.include_offset = include_offset


class DTraceCollapser:
    """Streaming DTrace collapser: ``feed()`` chunks split anywhere, then ``finish()``.

    ``native``: count runs with the C speedups (None: when built and not turned off by
    ``FLAMED_NO_EXTENSIONS=1``; False: never; True: they must be there).
    """

    def __init__(self, options: DTraceOptions | None = None, native: bool | None = None) -> None:
        self.options = options or DTraceOptions()
        self.warn = WarnOnce()
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.bytes_fed = 0
        self._pending = b""
        self._frames: list[bytes] = []  # frame lines (leaf first) not yet closed by a count
        self._started = False  # a blank line or a stack has been seen: the header is behind
        self._run_cache: dict[bytes, tuple[str, int]] = {}  # frames and count -> stack, count
        self._body_cache: dict[bytes, str] = {}  # frame lines -> stack
        self._line_cache: dict[tuple[bytes, bool], tuple[str, ...]] = {}
        self._folder = self._native_folder(native)

    def _native_folder(self, native: bool | None) -> RunFolder | None:
        module = speedups.choose(native)
        if module is None:
            return None
        folder: RunFolder = module.RunFolder(
            self._fold_run, self._cached_line, self.counts, self.options.include_offset
        )
        return folder

    @property
    def native(self) -> bool:
        """Does this collapser count runs with the C speedups?"""
        return self._folder is not None

    # -- streaming ---------------------------------------------------------

    @property
    def reads_mapped(self) -> bool:
        """Does ``feed`` read a mapped file where it lies (the C folder)? See PerfCollapser."""
        return self._folder is not None

    def feed(self, data: bytes | mmap) -> None:
        """Fold every complete run in ``data`` and keep the rest for later. ``data`` may be a
        read-only map of a file where ``reads_mapped`` says so."""
        self.feed_range(data, 0, len(data))

    def feed_range(self, data: bytes | mmap, start: int, stop: int) -> None:
        """``feed(data[start:stop])``; the C folder reads the runs of that range where they
        lie, so a mapped file, or a part of it, is folded without being copied."""
        self.bytes_fed += stop - start
        if self._folder is not None and not self._pending:
            end = data.rfind(b"\n\n", start, stop)
            if end >= 0:
                self._pending = data[end + 2 : stop]
                self._fold_runs_in_place(self._folder, data, start, end)
                self._fold_closed_tail()
                return
        chunk = data[start:stop]
        buffer = self._pending + chunk if self._pending else chunk
        end = buffer.rfind(b"\n\n")
        if end >= 0:
            self._pending = buffer[end + 2 :]
            self._fold_runs(buffer[:end])
        elif len(buffer) > MAX_PENDING:
            end = buffer.rfind(b"\n")
            self._pending = buffer[end + 1 :]
            self._fold_lines(buffer[:end].split(b"\n"))
        else:
            self._pending = buffer
        self._fold_closed_tail()

    def part_break(self, data: bytes | mmap, start: int) -> int:
        """Where input folded in parts may be cut (see ``flamed.collapse.parallel``): the
        first blank line at or after ``start`` that follows a count line, so that no stack
        goes on across it (header lines before it are the next part's to skip); -1: none."""
        found = data.find(b"\n\n", start)
        while found >= 0:
            line = data.rfind(b"\n", 0, found) + 1
            if P.COUNT_LINE.fullmatch(data[line:found]):
                return found
            found = data.find(b"\n\n", found + 1)
        return found

    def _fold_closed_tail(self) -> None:
        """Fold the rest now when it ends with a count line, so a live stream's last stack
        of a dump (no blank line after it yet) counts before the next dump comes."""
        pending = self._pending
        if not pending.endswith(b"\n"):
            return
        start = pending.rfind(b"\n", 0, len(pending) - 1) + 1
        if P.COUNT_LINE.fullmatch(pending, start, len(pending) - 1):
            self._pending = b""
            self._fold_lines(pending[:-1].split(b"\n"))

    def finish(self) -> Folded:
        """Fold what is left; a stack without its count at the end is dropped with a warning."""
        pending, self._pending = self._pending, b""
        if pending:
            self._fold_lines(pending.split(b"\n"))
        if self._frames and (self._started or not self._header_only(self._frames)):
            self.warn("input ends inside a stack (no count after its frames)", decode(pending))
        self._frames = []
        retire(self._folder)
        self._folder = None  # it holds this collapser's methods: a cycle (see PerfCollapser)
        return Folded(dict(self.counts))

    # -- runs --------------------------------------------------------------

    def _fold_runs(self, text: bytes) -> None:
        """Fold complete runs (the text ends just before a blank line). A run after one
        whose frames go on (see the module's doc) is folded line by line, never cached."""
        carry = bool(self._frames)  # the rest of a run begun before, or a stack going on
        if self._folder is not None:
            self._fold_runs_in_place(self._folder, text, 0, len(text))
            return
        counts = self.counts
        cache = self._run_cache
        hits = 0
        for run in text.split(b"\n\n"):
            found = None if carry else cache.get(run)
            if found is None:
                carry = self._fold_run(run) is True
                continue
            stack, count = found
            counts[stack] = counts.get(stack, 0) + count
            hits += 1
        self.samples += hits
        self._started = True

    def _fold_runs_in_place(
        self, folder: RunFolder, data: bytes | mmap, start: int, end: int
    ) -> None:
        """The C folder counts the runs of ``data[start:end]`` (complete runs: ``end`` is
        just before a blank line) where they lie. The first one, where a dump's header may
        be, is Python's to read; after it a blank line has been seen, which is all the C
        folder does not know."""
        first = data.find(b"\n\n", start, end)
        carry = self._fold_run(data[start : end if first < 0 else first]) is True
        self._started = True
        if first >= 0:
            self.samples += folder.fold(memoryview(data)[first + 2 : end], carry)

    def _fold_run(self, run: bytes) -> tuple[str, int] | bool:
        """A run the run cache does not know, or one after frames that go on: folded and
        counted. Gives what to cache for it, else whether frames go on into the next run."""
        if not self._frames:
            body, _, last = run.rpartition(b"\n")
            count = P.COUNT_LINE.fullmatch(last)
            stack = self._body_stack(body) if count is not None and body else None
            if count is not None and stack is not None:
                number = int(count.group(1))
                self._count(stack, number)
                self._started = True
                remember(self._run_cache, run, (stack, number), RUN_CACHE_LIMIT)
                return stack, number
        self._fold_lines(run.split(b"\n"))
        self._end_run()
        return bool(self._frames)

    def _body_stack(self, body: bytes) -> str | None:
        """The stack of a run's frame lines, cached; None unless they are all frame lines."""
        stack = self._body_cache.get(body)
        if stack is None and P.NOT_A_FRAME.search(body) is None:
            stack = self._fold_stack(body.split(b"\n"))
            if stack is not None:
                remember(self._body_cache, body, stack, RUN_CACHE_LIMIT)
        return stack

    def _fold_lines(self, lines: list[bytes]) -> None:
        """The general path: lines in order, with frames carried across calls."""
        for line in lines:
            count = P.COUNT_LINE.fullmatch(line)
            if count is not None:
                stack = self._fold_stack(self._frames) if self._frames else None
                if stack is not None:
                    self._count(stack, int(count.group(1)))
                elif not self._frames:
                    self.warn("count without frames", decode(line))
                self._frames = []
                self._started = True
            elif P.BLANK_LINE.fullmatch(line):
                self._end_run()
            else:
                self._frames.append(line)

    def _end_run(self) -> None:
        """A blank line: frames no count closed are a dump's header (dropped), or the
        first part of a stack that goes on after the blank line (kept)."""
        if not self._started or self._header_only(self._frames):
            self._frames = []
        self._started = True

    @staticmethod
    def _header_only(lines: list[bytes]) -> bool:
        return all(P.HEADER_LINE.match(decode(line)) for line in lines)

    def _count(self, stack: str, count: int) -> None:
        counts = self.counts
        counts[stack] = counts.get(stack, 0) + count
        self.samples += 1

    # -- frames ------------------------------------------------------------

    def _fold_stack(self, lines: list[bytes]) -> str | None:
        """Frame lines, leaf first, to frames root first joined by ``;`` (None: no frames)."""
        leaf_differs = self.options.include_offset
        groups = [
            self._cached_line(line, leaf_differs and index == 0) for index, line in enumerate(lines)
        ]
        stack = [func for group in reversed(groups) for func in group]
        return ";".join(stack) if stack else None

    def _cached_line(self, line: bytes, leaf: bool) -> tuple[str, ...]:
        """The frames of one line (``leaf``: the leaf's, under include_offset), cached."""
        key = (line, leaf)
        funcs = self._line_cache.get(key)
        if funcs is None:
            funcs = self._line_frames(line, leaf)
            remember(self._line_cache, key, funcs, LINE_CACHE_LIMIT)
        return funcs

    def _line_frames(self, raw: bytes, leaf: bool) -> tuple[str, ...]:
        """The frames of one line, more than one when inlined (``a->b``)."""
        frame = decode(raw).lstrip(" \t\r\f\v")
        name, offset = split_offset(frame)
        if not self.options.include_offset or leaf:
            offset = ""
        name = strip_cpp_arguments(name) + offset
        if not name:
            name = "-"
        parts = name.split("->")
        while parts and not parts[-1]:  # as Perl's split: trailing empty fields go
            parts.pop()
        # A name that tidies to nothing (``L+0x1``: the Java ``L`` goes) is "-", as an empty
        # one is above: a stack of one empty frame would be written as a line without one.
        tidied = [tidy_frame(part) or "-" for part in parts]
        return tuple(func + ("_[i]" if index else "") for index, func in enumerate(tidied))


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> None:
    """Store in a bounded cache: at the limit it is emptied and starts again."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


def split_offset(frame: str) -> tuple[str, str]:
    """``mod`func+0x1f`` -> (``mod`func``, ``+0x1f``): everything from the last ``+``."""
    plus = frame.rfind("+")
    return (frame, "") if plus < 0 else (frame[:plus], frame[plus:])


def strip_cpp_arguments(name: str) -> str:
    """Cut what follows a C++ name: from the last ``(`` or ``<`` after the first ``::``."""
    start = name.find("::")
    if start < 0:
        return name
    cut = max(name.rfind("(", start + 2), name.rfind("<", start + 2))
    return name if cut < 0 else name[:cut]


def tidy_frame(func: str) -> str:
    """One frame: no ``;`` (it separates frames), no leading Java ``L``, Rust names tidied
    (white space before a cut ``(.llvm.N)`` goes with the hash, as inferno has it)."""
    func = func.replace(";", ":")
    if func.startswith("L"):
        func = func[1:]
    module, tick, symbol = func.rpartition("`")
    trimmed = symbol.rstrip()
    tidied = tidy_rust(trimmed)
    return module + tick + (symbol if tidied == trimmed else tidied)


def is_applicable(head: bytes) -> bool | None:
    """Does this look like a DTrace stack aggregation? None: not enough input to say.

    Yes when a count line closes indented frame lines. No when, after the
    header (a few lines before the first blank line), an unindented line that
    is not a DTrace probe line starts a run, or when no stack closes in 64 KiB.
    """
    frames = 0
    header: int | None = 0  # unindented lines before the first blank line; None after it
    for line in head.split(b"\n")[:-1]:
        if P.COUNT_LINE.fullmatch(line):
            if frames:
                return True
        elif P.BLANK_LINE.fullmatch(line):
            frames, header = 0, None
        elif line[:1] in (b" ", b"\t"):
            frames += 1
        elif header is not None:
            header += 1
            if header > MAX_HEADER_LINES:
                return False
        elif not frames and not P.HEADER_LINE.match(decode(line)):
            return False
    return None if len(head) < 64 * 1024 else False
