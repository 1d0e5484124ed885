"""Collapse ``perf script`` output into folded stacks, as stackcollapse-perf.pl does.

The input is a sequence of records separated by blank lines: an event line
(``comm pid/tid [cpu] time: period event:``) followed by one line per frame,
leaf first (``ip symbol+off (module)``). The output counts each stack, root
first, weighted by the period, under the command name.

Speed comes from caching what repeats: a record's frame lines (everything
after its event line) are folded once and the result reused whenever the same
lines come again, which in continuous profiling is most of the time. Records
the fast path does not recognise go through a line-by-line state machine that
follows the Perl script, including its fixes (see ``PerfOptions``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from flamed.collapse.common import WarnOnce
from flamed.collapse.folded import Folded, decode
from flamed.collapse.symbols import tidy_rust

# `comm pid[/tid] ...`: the command name may hold spaces, so it is the shortest
# prefix followed by a number. Same pattern as the Perl script, ASCII classes.
EVENT_LINE = re.compile(r"(\S.+?)\s+(\d+)/*(\d+)*\s+", re.ASCII)
# `...: PERIOD EVENT:` at the end of the event line (period optional).
PERIOD_EVENT = re.compile(r":\s*(\d+)*\s+(\S+):\s*$", re.ASCII)
# A record without a call chain carries its only frame on the event line.
INLINE_FRAME = re.compile(r":\s*(\d+)*\s+(\S+?):\s+([0-9a-fA-F]+\s+\S.*\))\s*$", re.ASCII)
FRAME_LINE = re.compile(r"\s*(\w+)\s*(.+) \((.*)\)", re.ASCII)
OFFSET = re.compile(r"\+0x[\da-f]+$")
GO_METHOD = re.compile(r"\.\(.*\)\.")
ARGS_START = re.compile(r"\((?!anonymous namespace\))")
EVENT_MODIFIERS = re.compile(r":[ukhpPGHISDWe]+$")
KERNEL_MODULE = re.compile(r"(^\[|vmlinux$|/vmlinux-[^/]*$|\.ko(\.[a-z]+)?$)")
JIT_MODULE = re.compile(r"(/tmp/perf-\d+\.map|/tmp/jitted-\d+-\d+\.so)")
UNINDENTED_LINE = re.compile(r"^\S", re.MULTILINE)

# Without a blank line in this much input (perf script of a recording without
# call chains has none), complete lines are folded anyway to bound memory.
MAX_PENDING = 4 << 20
# Caches are dropped when they reach this many entries, to bound memory.
CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class PerfOptions:
    """Options of ``flamed collapse perf``, named as stackcollapse-perf.pl names them.

    Beyond the Perl script: versioned ``vmlinux-*`` images and ``.ko`` modules are
    kernel frames, ``/tmp/jitted-*.so`` modules are JIT frames, a ``(`` inside
    template brackets does not start an argument list, Rust legacy-mangled names
    are tidied, records without a call chain count, the event filter ignores
    modifiers (``cycles`` matches ``cycles:u``), and the last record counts even
    when the input does not end with a blank line.
    """

    include_pid: bool = False
    """Append the process id to the command name: ``comm-PID``."""
    include_tid: bool = False
    """Append process and thread id: ``comm-PID/TID``."""
    annotate_kernel: bool = False
    """Mark kernel frames with ``_[k]``."""
    annotate_jit: bool = False
    """Mark JIT frames with ``_[j]``."""
    include_addrs: bool = False
    """Show the address of frames whose symbol is unknown: ``[module <addr>]``."""
    event_filter: str | None = None
    """Keep only samples of this event; None: the first event seen."""
    skip_after: tuple[str, ...] = ()
    """Drop the callers of the leafmost frame with one of these names, and the comm."""
    srcline: bool = False
    """Input has a source line after each frame (``perf script -F+srcline``)."""


@dataclass
class _Sample:
    """The event line of a record being read line by line."""

    pname: str
    period: int
    java: bool
    frame_lines: list[str]


class PerfCollapser:
    """Streaming ``perf script`` collapser: ``feed()`` chunks split anywhere, then ``finish()``."""

    def __init__(self, options: PerfOptions | None = None) -> None:
        self.options = options or PerfOptions()
        self.warn = WarnOnce()
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.bytes_fed = 0
        self._pending = b""
        self._event_filter = (
            None if self.options.event_filter is None else event_base(self.options.event_filter)
        )
        self._filter_warned = False
        self._body_cache: tuple[dict[str, tuple[str, bool]], dict[str, tuple[str, bool]]] = ({}, {})
        self._line_cache: tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]] = ({}, {})
        self._skip = frozenset(self.options.skip_after)

    # -- streaming ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Fold every complete record in ``data`` and keep the rest for later."""
        self.bytes_fed += len(data)
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n\n")
        if end < 0 and len(buffer) > MAX_PENDING:
            end = buffer.rfind(b"\n")
        if end < 0:
            self._pending = buffer
            return
        self._pending = buffer[end + 1 :]
        self._fold_text(decode(buffer[:end]))

    def finish(self) -> Folded:
        """Fold what is left (a last record needs no blank line after it) and return the profile."""
        if self._pending.strip():
            self._fold_text(decode(self._pending))
        self._pending = b""
        return Folded(dict(self.counts))

    def is_applicable(self, head: bytes) -> bool | None:
        return is_applicable(head)

    # -- records -----------------------------------------------------------

    def _fold_text(self, text: str) -> None:
        for record in text.split("\n\n"):
            if record:
                self._fold_record(record.strip("\n"))

    def _fold_record(self, record: str) -> None:
        if record.startswith("#") or "\n#" in record:
            record = "\n".join(line for line in record.split("\n") if not line.startswith("#"))
            if not record:
                return
        newline = record.find("\n")
        header = record if newline < 0 else record[:newline]
        body = "" if newline < 0 else record[newline + 1 :]
        event = EVENT_LINE.match(header)
        if event is None:
            self._fold_lines(record.split("\n"))
            return
        sample = self._sample(header, event)
        if sample is None:
            return
        if sample.frame_lines:  # no call chain: the frame is on the event line
            self._fold_lines(record.split("\n"))
            return
        cache = self._body_cache[sample.java]
        folded = cache.get(body)
        if folded is None:
            if UNINDENTED_LINE.search(body):
                self._fold_lines(record.split("\n"))
                return
            folded = self._fold_frames(body.split("\n") if body else [], sample.java)
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[body] = folded
        self._count(sample, folded)

    def _fold_lines(self, lines: Iterable[str]) -> None:
        """The slow path: a state machine over the lines of a record, as the Perl script reads."""
        sample: _Sample | None = None
        for line in lines:
            event = None if line[:1].isspace() else EVENT_LINE.match(line)
            if event is not None:
                if sample is not None:
                    self._count(sample, self._fold_frames(sample.frame_lines, sample.java))
                sample = self._sample(line, event)
            elif sample is not None:
                sample.frame_lines.append(line)
            elif not line[:1].isspace() and line:
                self.warn("unrecognized perf script line", line)
        if sample is not None:
            self._count(sample, self._fold_frames(sample.frame_lines, sample.java))

    def _sample(self, header: str, event: re.Match[str]) -> _Sample | None:
        """Parse an event line; None when the event filter drops the sample."""
        comm, pid, tid = event.group(1, 2, 3)
        if tid is None:
            pid, tid = "?", pid
        frame_lines = []
        found = PERIOD_EVENT.search(header)
        if found is None:
            found = INLINE_FRAME.search(header)
            if found is not None:
                frame_lines.append(found.group(3))
        period = 1
        if found is not None:
            if found.group(1):
                period = int(found.group(1))
            if not self._keep_event(found.group(2)):
                return None
        options = self.options
        if options.include_tid:
            pname = f"{comm}-{pid}/{tid}"
        elif options.include_pid:
            pname = f"{comm}-{pid}"
        else:
            pname = comm
        return _Sample(pname.replace(" ", "_"), period, pname.startswith("java"), frame_lines)

    def _keep_event(self, event: str) -> bool:
        base = event_base(event)
        if self._event_filter is None:
            self._event_filter = base
            return True
        if base == self._event_filter:
            return True
        if not self._filter_warned and self.options.event_filter is None:
            self.warn.logger.warning(
                "more than one event in the input: keeping %s, skipping %s "
                "(choose with --event-filter)",
                self._event_filter,
                base,
            )
            self._filter_warned = True
        return False

    def _count(self, sample: _Sample, folded: tuple[str, bool]) -> None:
        frames, drop_comm = folded
        if drop_comm:
            stack = frames
        elif frames:
            stack = f"{sample.pname};{frames}"
        else:
            stack = sample.pname
        counts = self.counts
        counts[stack] = counts.get(stack, 0) + sample.period
        self.samples += 1

    # -- frames ------------------------------------------------------------

    def _fold_frames(self, lines: list[str], java: bool) -> tuple[str, bool]:
        """Frame lines (leaf first) to ``(frames root first joined by ';', drop the comm?)``."""
        groups: list[tuple[str, ...]] = []
        if self.options.srcline:
            source = iter(lines)
            for line in source:
                groups.append(self._line_frames(line, java, source))
        else:
            cache = self._line_cache[java]
            for line in lines:
                frames = cache.get(line)
                if frames is None:
                    frames = self._line_frames(line, java, None)
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[line] = frames
                groups.append(frames)
        stack = [frame for group in reversed(groups) for frame in group]
        if self._skip:
            return skip_callers(stack, self._skip)
        return ";".join(stack), False

    def _line_frames(self, line: str, java: bool, source: Iterator[str] | None) -> tuple[str, ...]:
        """The frames of one ``ip symbol (module)`` line; more than one when inlined (``a->b``)."""
        match = FRAME_LINE.match(line)
        if match is None:
            if line.strip():
                self.warn("unrecognized perf script line", line)
            return ()
        pc, raw, module = match.group(1, 2, 3)
        if module.count("(") != module.count(")"):
            pc, raw, module = split_balanced(line) or (pc, raw, module)
        raw = OFFSET.sub("", raw)
        if raw.startswith("("):
            return ()
        frames: list[str] = []
        unknown = False
        for index, part in enumerate(raw.split("->")):
            if part == "[unknown]":
                unknown = unknown or module == "[unknown]"
                part = self._unknown_name(pc, module)
            func = self._tidy(part, java)
            func = self._annotate(func, module, inlined=index > 0)
            if source is not None and not unknown:
                func += srcline_suffix(next(source, ""))
            frames.append(func)
        return tuple(frames)

    def _unknown_name(self, pc: str, module: str) -> str:
        name = module.rsplit("/", 1)[-1] if module != "[unknown]" else "unknown"
        return f"[{name} <{pc}>]" if self.options.include_addrs else f"[{name}]"

    @staticmethod
    def _tidy(func: str, java: bool) -> str:
        func = func.replace(";", ":")
        if "(" in func and not GO_METHOD.search(func):
            func = strip_arguments(func)
        func = tidy_rust(func).replace('"', "").replace("'", "")
        if java and "/" in func and func.startswith("L"):
            func = func[1:]
        return func

    def _annotate(self, func: str, module: str, inlined: bool) -> str:
        options = self.options
        if inlined:
            return func if "_[i]" in func else func + "_[i]"
        if options.annotate_kernel and KERNEL_MODULE.search(module) and "unknown" not in module:
            return func + "_[k]"
        if options.annotate_jit and JIT_MODULE.search(module):
            return func if "_[j]" in func else func + "_[j]"
        return func


def event_base(event: str) -> str:
    """An event's name without its modifiers: ``cycles:ppp`` -> ``cycles``."""
    return EVENT_MODIFIERS.sub("", event)


def strip_arguments(func: str) -> str:
    """Cut a C++/Java argument list: everything from the first ``(`` outside template brackets.

    ``(anonymous namespace)`` is kept. Where brackets do not balance
    (``operator<<``), the first ``(`` is taken, as the Perl script does.
    """
    starts = [m.start() for m in ARGS_START.finditer(func)]
    if not starts:
        return func
    for start in starts:
        if func.count("<", 0, start) <= func.count(">", 0, start):
            return func[:start]
    if func.count("<") != func.count(">"):
        return func[: starts[0]]
    return func


def split_balanced(line: str) -> tuple[str, str, str] | None:
    """Split ``ip symbol (module)`` where the module holds parentheses, by matching them."""
    text = line.strip()
    if not text.endswith(")"):
        return None
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        depth += char == ")"
        depth -= char == "("
        if depth == 0 and index > 0 and text[index - 1] == " ":
            head = text[: index - 1].split(None, 1)
            if len(head) == 2:
                return head[0], head[1], text[index + 1 : -1]
            return None
    return None


def srcline_suffix(line: str) -> str:
    """The ``:file.c:12`` to append from a ``perf script -F+srcline`` source line."""
    source = re.sub(r"\[.*?\]", "", line).strip()
    return f":{source}" if source else ""


def skip_callers(stack: list[str], names: frozenset[str]) -> tuple[str, bool]:
    """Keep the leafmost frame named in ``names`` and what it calls; drop its callers."""
    for index in range(len(stack) - 1, -1, -1):
        frame = stack[index]
        if frame in names or (frame.endswith("]") and frame[:-4] in names):
            return ";".join(stack[index:]), True
    return ";".join(stack), False


def is_applicable(head: bytes) -> bool | None:
    """Does this look like ``perf script`` output? None: not enough input to say."""
    lines = [line for line in decode(head).split("\n") if line and not line.startswith("#")]
    for index, line in enumerate(lines[:-1]):
        if EVENT_LINE.match(line) and (PERIOD_EVENT.search(line) or INLINE_FRAME.search(line)):
            following = lines[index + 1]
            return bool(FRAME_LINE.match(following) or EVENT_LINE.match(following))
    return None if len(head) < 64 * 1024 else False
