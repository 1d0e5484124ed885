"""Collapse ``perf script`` output into folded stacks, as stackcollapse-perf.pl does.

The input is a sequence of records separated by blank lines: an event line
(``comm pid/tid [cpu] time: period event:``) followed by one line per frame,
leaf first (``ip symbol+off (module)``). The output counts each stack, root
first, weighted by the period, under the command name.

Speed comes from what repeats, which in continuous profiling is most records:
input of perf script's default shape is cut into records by one regular
expression (``count_uniform``), alike records are counted together, and each
distinct one is folded once, through caches of what a record, its frame lines
and each frame line fold to. Records of other shapes go through ``RECORD`` and,
failing that, a line-by-line state machine that follows the Perl script,
including its fixes (see ``PerfOptions``).
"""

from __future__ import annotations

from flamed.collapse import speedups
from flamed.collapse.common import ASCII, MULTILINE, TYPE_CHECKING, LazyPatterns, WarnOnce, retire
from flamed.collapse.folded import Count, Folded, decode
from flamed.collapse.symbols import tidy_rust

if TYPE_CHECKING:
    import re
    from collections import Counter
    from collections.abc import Callable, Iterable, Iterator
    from mmap import mmap
    from typing import ClassVar

    from flamed.collapse._speedups import PerfFolder
    from flamed.collapse.inline import BinaryTools, Inliner

# perf script's default event line (`comm pid/tid [cpu] time: period event:`, no
# space in comm) after a blank line, up to its first colon: see P.UNIFORM_HEAD.
_UNIFORM_HEAD = rb"\n\n++(\S[^\s]++)[^\S\n]++%s[^\S\n][^:\n]*+:"
_PID_TID = rb"(?:\d++|-1)/*+(?:\d++|-1)?+"


# perf's event modifiers (`cycles:ppp`, `cpu-clock:u`): event_base() drops them.
EVENT_MODIFIER_LETTERS = "ukhpPGHISDWe"


class _Patterns(LazyPatterns):
    """The regular expressions of the pure-Python reader, compiled at first use: the C
    folder needs none of them for the common record shapes."""

    EVENT_LINE: re.Pattern[str]
    PERIOD_EVENT: re.Pattern[str]
    INLINE_FRAME: re.Pattern[str]
    FRAME_LINE: re.Pattern[str]
    OFFSET: re.Pattern[str]
    GO_METHOD: re.Pattern[str]
    ARGS_START: re.Pattern[str]
    KERNEL_MODULE: re.Pattern[str]
    JIT_MODULE: re.Pattern[str]
    PERF_MAP_MODULE: re.Pattern[str]
    RECORD: re.Pattern[bytes]
    UNIFORM_HEAD: re.Pattern[bytes]
    UNIFORM_HEAD_BY_COMM: re.Pattern[bytes]
    UNIFORM_TAIL: re.Pattern[bytes]
    UNINDENTED: re.Pattern[bytes]

    SOURCES: ClassVar[dict[str, tuple[str | bytes, int]]] = {
        # `comm pid[/tid] ...`: the command name may hold spaces, so it is the shortest
        # prefix followed by a number. The Perl script's pattern, ASCII classes, and a pid
        # or tid of -1 (perf's for a sample it has no thread for, which the Perl script
        # misreads).
        "EVENT_LINE": (r"(\S.+?)\s++(\d++|-1)/*+(\d++|-1)?\s", ASCII),
        # `...: PERIOD EVENT:` at the end of the event line (period optional).
        "PERIOD_EVENT": (r":(?:\s*+(\d++))?\s++(\S+):\s*$", ASCII),
        # A record without a call chain carries its only frame on the event line.
        "INLINE_FRAME": (
            r":(?:\s*+(\d++))?\s++(\S+?):\s++([0-9a-fA-F]++\s++\S.*\))\s*$",
            ASCII,
        ),
        "FRAME_LINE": (r"\s*+(\w++)\s*(.+) \((.*)\)$", ASCII),
        "OFFSET": (r"\+0x[\da-f]+$", 0),
        "GO_METHOD": (r"\.\(.*\)\.", 0),
        "ARGS_START": (r"\((?!anonymous namespace\))", 0),
        "KERNEL_MODULE": (r"(^\[|vmlinux$|/vmlinux-[^/]*$|\.ko(\.[a-z]+)?$)", 0),
        # perf-map frames, and the ELF files `perf inject --jit` writes beside a jitdump
        # file (wherever that is: the JIT's working folder, ~/.debug/jit/..., /tmp).
        "JIT_MODULE": (r"(/tmp/perf-\d+\.map|(?:^|/)jitted-\d+-\d+\.so)", 0),
        # The module perf gives a frame of a JIT's perf map: the pid is the process's as
        # perf sees it.
        "PERF_MAP_MODULE": (r"/tmp/perf-(\d+)\.map", 0),
        # The common record, whole, in bytes: an event line ending in `PERIOD EVENT:` (the
        # two patterns above, kept within one line), the indented frame lines after it and
        # the blank lines that end it. `.` (any byte but a newline) is the engine's fastest
        # loop. Possessive and atomic parts keep every pattern here linear in the line's
        # length: the Perl script's `(\d+)*` backtracked exponentially on a run of digits,
        # and retrying every longer command name made lines of spaces or `1 1 1 ...`
        # quadratic. Its split() gives the text before each record, then its groups:
        # comm, pid, tid, period, event, frame lines (SPLIT_STRIDE apart).
        "RECORD": (
            rb"^(?>(\S.+?)(?<!\s\s)[^\S\n]++(\d++|-1)/*+(\d++|-1)?[^\S\n])"
            rb".*?:(?:[^\S\n]*+(\d++))?[^\S\n]++(\S+):[^\S\n]*\n"
            rb"((?:[ \t].*\n)*+)\n*+",
            ASCII | MULTILINE,
        ),
        # perf script's default event line up to its first colon, after a blank line.
        # Splitting at these is the fastest way through the input: what is between two of
        # them is the rest of one record (`period event:` and the frame lines), checked by
        # parse_uniform(). When it matches, it gives what RECORD gives.
        "UNIFORM_HEAD": (_UNIFORM_HEAD % b"(%s)" % _PID_TID, ASCII),
        # The same without the pid/tid group, when records are counted by comm: a third
        # fewer objects to make.
        "UNIFORM_HEAD_BY_COMM": (_UNIFORM_HEAD % _PID_TID, ASCII),
        # The rest of that event line: RECORD's `.*?:` may pass more colons.
        "UNIFORM_TAIL": (
            rb"(?:.*?:)??(?:[^\S\n]*+(\d++))?[^\S\n]++(\S+):[^\S\n]*+",
            ASCII,
        ),
        # A line of a record's frame lines that is not indented ends the record for RECORD.
        "UNINDENTED": (rb"\n[^ \t]", 0),
    }


P = _Patterns()
SPLIT_STRIDE = 7
"""RECORD's groups + 1: its split() gives the text before a record, then its 6 groups."""

if TYPE_CHECKING:
    MapResolver = Callable[[int, int], str | None]
else:  # a name for annotations, without importing collections.abc: start-up time counts
    MapResolver = "Callable[[int, int], str | None]"
"""Names a perf-map frame: (pid in the module's name, address) -> the symbol, or None."""
Record = tuple[bytes, bytes | None, bytes | None, bytes | None, bytes, bytes]
"""A record's comm, pid, tid, period, event and frame lines (without the last newline)."""
Tally = tuple[tuple[str, tuple[str, bool]], int]
"""What a record counts for: (process name, (folded frames, drop the name?)), weight."""
DROPPED: Tally = (("", ("", False)), 0)
"""The tally of a record the event filter drops."""

# Without a blank line in this much input (perf script of a recording without
# call chains has none), complete lines are folded anyway to bound memory.
MAX_PENDING = 4 << 20
# Caches are dropped when they reach this many entries, to bound memory.
CACHE_LIMIT = 200_000
UNKNOWN_THREAD = ":-1"
"""perf's command name for a sample of pid or tid -1 (":" and the tid it has no name for)."""
UNKNOWN_PID = "[unknown pid]"
"""What such samples are folded under (the Perl script makes ":-1_16543/-1____1.2:" of them)."""


class PerfOptions:
    """Options of ``flamed collapse perf``, named as stackcollapse-perf.pl names them.

    Beyond the Perl script: versioned ``vmlinux-*`` images and ``.ko`` modules are
    kernel frames, ``jitted-*.so`` modules in any folder are JIT frames, a ``(`` inside
    template brackets does not start an argument list, Rust legacy-mangled names
    are tidied, records without a call chain count, the event filter ignores
    modifiers (``cycles`` matches ``cycles:u``), the last record counts even
    when the input does not end with a blank line, and records perf prints with a pid
    or tid of -1 (command ``:-1``) are folded under ``[unknown pid]``, where the Perl
    script makes a command name of the whole event line.

    - ``include_pid``: append the process id to the command name: ``comm-PID``.
    - ``include_tid``: append process and thread id: ``comm-PID/TID``.
    - ``annotate_kernel``: mark kernel frames with ``_[k]``.
    - ``annotate_jit``: mark JIT frames with ``_[j]``.
    - ``include_addrs``: show the address of frames whose symbol is unknown:
      ``[module <addr>]``.
    - ``event_filter``: keep only samples of this event; None: the first event seen.
    - ``skip_after``: drop the callers of the leafmost frame with one of these names,
      and the comm.
    - ``srcline``: input has a source line after each frame (``perf script -F+srcline``).
    - ``period_weights``: weight each sample by its period, as the Perl script does
      (for ``cpu-clock`` that is nanoseconds); False counts samples, which the daemon does.
    - ``inline``: put inlined functions in place of the frame they were inlined into,
      through addr2line (input of ``perf script --no-inline``; see ``flamed.collapse.inline``).
    - ``context``: with ``inline``, add each inlined frame's ``:file.c:LINE``.
    - ``python``: the Python view of stacks with CPython's ``py::`` frames (see
      ``flamed.collapse.python``).

    A plain class, not a dataclass: importing dataclasses costs ~10 ms of start-up,
    and start-up counts in every ``flamed collapse perf``.
    """

    def __init__(
        self,
        *,
        include_pid: bool = False,
        include_tid: bool = False,
        annotate_kernel: bool = False,
        annotate_jit: bool = False,
        include_addrs: bool = False,
        event_filter: str | None = None,
        skip_after: tuple[str, ...] = (),
        srcline: bool = False,
        period_weights: bool = True,
        inline: bool = False,
        context: bool = False,
        python: bool = False,
    ) -> None:
        self.include_pid = include_pid
        self.include_tid = include_tid
        self.annotate_kernel = annotate_kernel
        self.annotate_jit = annotate_jit
        self.include_addrs = include_addrs
        self.event_filter = event_filter
        self.skip_after = skip_after
        self.srcline = srcline
        self.period_weights = period_weights
        self.inline = inline
        self.context = context
        self.python = python


class _Sample:
    """The event line of a record being read line by line."""

    __slots__ = ("frame_lines", "java", "period", "pname")

    def __init__(self, pname: str, period: int, java: bool, frame_lines: list[str]) -> None:
        self.pname = pname
        self.period = period
        self.java = java
        self.frame_lines = frame_lines


class PerfCollapser:
    """Streaming ``perf script`` collapser: ``feed()`` chunks split anywhere, then ``finish()``.

    ``tools`` runs addr2line and nm for ``options.inline`` (required then).
    ``maps`` names the frames of JIT perf maps (``/tmp/perf-PID.map``) from the
    process's own map, read by the caller (``flamed.collector.perfmap``), in place
    of perf's name (``[unknown]`` where perf could not read it, or stale): each
    distinct frame line is asked once per collapser.
    ``native``: fold with the C speedups where they apply (None: when built and not
    turned off by ``FLAMED_NO_EXTENSIONS=1``; False: never; True: they must be there).
    The output is the same either way.
    """

    def __init__(
        self,
        options: PerfOptions | None = None,
        tools: BinaryTools | None = None,
        native: bool | None = None,
        maps: MapResolver | None = None,
    ) -> None:
        self.options = options or PerfOptions()
        self._inliner = make_inliner(self.options, tools)
        self._maps = maps
        self.warn = WarnOnce()
        self._tallies: dict[tuple[str, tuple[str, bool]], int] = {}
        self.samples = 0
        self.bytes_fed = 0
        self._pending = b""
        self._event_filter = (
            None if self.options.event_filter is None else event_base(self.options.event_filter)
        )
        self._filter_warned = False
        self._events: dict[str, bool] = {}
        self._names: dict[str, str] = {}
        self._record_tallies: dict[Record, Tally] = {}
        self._body_cache: tuple[dict[bytes, tuple[str, bool]], dict[bytes, tuple[str, bool]]] = (
            {},
            {},
        )
        self._line_cache: tuple[dict[str, str], dict[str, str]] = ({}, {})
        self._skip = frozenset(self.options.skip_after)
        self._stacks: dict[str, Count] = {}  # what the C folder counted
        self._folder = self._native_folder(native)

    def _native_folder(self, native: bool | None) -> PerfFolder | None:
        """The C folder, where it is wanted and the options are ones it knows."""
        options = self.options
        if options.srcline or options.skip_after or options.inline or options.context:
            return None  # options only Python knows
        module = speedups.choose(native)
        if module is None:
            return None
        folder: PerfFolder = module.PerfFolder(
            self._keep_event_cached,
            self._cache_line,
            self._fold_mixed,
            self._stacks,
            include_pid=options.include_pid,
            include_tid=options.include_tid,
            kernel=options.annotate_kernel,
            jit=options.annotate_jit,
            addrs=options.include_addrs,
            weights=options.period_weights,
            maps=self._maps is not None,
        )
        return folder

    # -- streaming ---------------------------------------------------------

    def feed(self, data: bytes | mmap) -> None:
        """Fold every complete record in ``data`` and keep the rest for later. ``data`` may
        be a read-only map of a file where ``reads_mapped`` says so."""
        self.feed_range(data, 0, len(data))

    def feed_range(self, data: bytes | mmap, start: int, stop: int) -> None:
        """``feed(data[start:stop])``; the C folder reads that range where it lies, so a
        part of a mapped file is folded without being copied."""
        self.bytes_fed += stop - start
        end = data.rfind(b"\n\n", start, stop)
        if self._folder is not None and end >= 0:
            self._fold_in_place(self._folder, data, start, end, stop)
            return
        chunk = data[start:stop]
        buffer = self._pending + chunk if self._pending else chunk
        end = buffer.rfind(b"\n\n")
        if end < 0 and len(buffer) > MAX_PENDING:
            end = buffer.rfind(b"\n")
        if end < 0:
            self._pending = bytes(buffer)  # not a map, which may be closed after
            return
        self._pending = buffer[end + 1 :]
        self._fold_records(buffer[: end + 1])

    def _fold_in_place(
        self, folder: PerfFolder, data: bytes | mmap, start: int, end: int, stop: int
    ) -> None:
        """The C folder reads ``data[start:stop]`` in place, up to the end of its last record
        (``end``: where a blank line starts). Only the text pending joins the first records
        and is copied; any cut at a record's end folds alike."""
        if self._pending:
            first = data.find(b"\n\n", start, stop) + 1
            self.samples += folder.fold(self._pending + data[start:first])
            start = first
        if start <= end:
            self.samples += folder.fold(memoryview(data)[start : end + 1])
        self._pending = data[end + 1 : stop]

    def finish(self) -> Folded:
        """Fold what is left (a last record needs no blank line after it) and return the profile."""
        if self._pending.strip():
            self._fold_records(self._pending + b"\n")
        self._pending = b""
        counts = self.counts
        # The C folder holds this collapser's methods: a reference cycle, freed with its
        # caches only by the garbage collector's full passes (a daemon's bucket each, piling up
        # for minutes). Dropping it here frees them now; more input folds in Python.
        retire(self._folder)
        self._folder = None
        if self.options.python:
            from flamed.collapse.python import python_counts  # only for --python

            counts = python_counts(counts)
        return Folded(counts)

    @property
    def native(self) -> bool:
        """Does this collapser fold with the C speedups?"""
        return self._folder is not None

    @property
    def reads_mapped(self) -> bool:
        """Does ``feed`` read a mapped file where it lies (the C folder), so that it is
        better given a map of a file than its bytes read (no pages filled and copied)?"""
        return self._folder is not None

    @property
    def event_filter(self) -> str | None:
        """The event whose samples count: as given, else the first one seen (None before)."""
        return self._event_filter

    @property
    def counts(self) -> dict[str, Count]:
        """Stack -> count of what was folded so far."""
        counts: dict[str, Count] = dict(self._stacks)
        for (pname, (frames, drop_comm)), count in self._tallies.items():
            stack = frames if drop_comm else f"{pname};{frames}" if frames else pname
            counts[stack] = counts.get(stack, 0) + count
        return counts

    # -- records -----------------------------------------------------------

    def _fold_records(self, data: bytes) -> None:
        """Fold complete lines: as uniform records if they are, else record by record."""
        if self._folder is not None:
            self.samples += self._folder.fold(data)
            return
        if self._inliner is not None:
            self._inliner.prefetch(data)
        counted = self.count_records(data)
        if counted is None:
            self._fold_mixed(data)
        else:
            self.fold_counted(*counted)

    def count_records(self, data: bytes | memoryview) -> tuple[bytes, dict[Record, int]] | None:
        """Complete lines of uniform input (see ``count_uniform``) to the text before its
        first cut and each distinct record's count; None for input of another shape.
        Changes nothing: input split in parts can be counted on several cores.
        (None under ``inline``, which looks frames up as each chunk is fed.)"""
        if self._inliner is not None:
            return None
        return count_uniform(data, self.options.include_pid or self.options.include_tid)

    def fold_counted(self, first: bytes, records: dict[Record, int]) -> None:
        """Fold what ``count_records`` gave (or the sum of what it gave for consecutive
        parts): ``first`` record by record, then each distinct record once."""
        self._fold_mixed(first + b"\n")
        self._tally(records)

    def _fold_mixed(self, data: bytes) -> None:
        """Fold complete lines. Records of the common shape (an event line ending in
        ``EVENT:`` and indented frame lines) are cut out by one regular expression and
        counted alike ones together; any other text between them goes, in its place in
        the input, through the line-by-line reader ``_fold_lines``."""
        parts = P.RECORD.split(data)
        gaps = parts[::SPLIT_STRIDE]
        first = 0
        if any(gaps):
            for index, gap in enumerate(gaps):
                if gap and not gap.isspace():
                    self._count_records(parts, first, index)
                    self._fold_lines(decode(gap).split("\n"))
                    first = index
        self._count_records(parts, first, len(gaps) - 1)

    def _count_records(self, parts: list[bytes | None], first: int, end: int) -> None:
        """Count records ``first`` to ``end`` (exclusive) of a RECORD.split() result,
        alike ones together: each distinct one is folded once."""
        if end <= first:
            return
        start, stop = first * SPLIT_STRIDE, end * SPLIT_STRIDE
        comms, pids, tids, periods, events, bodies = (
            parts[start + group : stop : SPLIT_STRIDE] for group in range(1, SPLIT_STRIDE)
        )
        if not (self.options.include_pid or self.options.include_tid):
            pids = tids = [None] * (end - first)  # one count for all processes of a comm
        from collections import Counter  # only on this path: start-up time counts

        distinct: Counter[tuple[bytes | None, ...]] = Counter(
            zip(comms, pids, tids, periods, events, bodies, strict=True)
        )
        records: dict[Record, int] = {}
        for (comm, pid, tid, period, event, body), count in distinct.items():
            assert comm is not None and event is not None and body is not None
            record = (comm, pid, tid, period, event, body[:-1])
            records[record] = records.get(record, 0) + count
        self._tally(records)

    def _tally(self, records: dict[Record, int]) -> None:
        """Count distinct records; what each one counts as is worked out once and kept."""
        known = self._record_tallies
        tallies = self._tallies
        samples = 0
        for record, count in records.items():
            tally = known.get(record) or self._record_tally(record)
            if tally is not DROPPED:
                key, weight = tally
                tallies[key] = tallies.get(key, 0) + weight * count
                samples += count
        self.samples += samples

    def _record_tally(self, record: Record) -> Tally:
        """The stack a record counts for and its weight; DROPPED for another event."""
        comm, pid, tid, period, event, body = record
        tally = DROPPED
        if self._keep_event_cached(decode(event)):
            java = comm.startswith(b"java")
            folded = self._body_cache[java].get(body) or self._fold_body(body, java)
            name = decode(comm)
            pname = self._names.get(name) if pid is None else None
            if pname is None:
                pname = self._pname(name, decode_optional(pid), decode_optional(tid))
            weight = int(period) if self.options.period_weights and period else 1
            tally = ((pname, folded), weight)
        if len(self._record_tallies) >= CACHE_LIMIT:
            self._record_tallies.clear()
        self._record_tallies[record] = tally
        return tally

    def _fold_body(self, body: bytes, java: bool) -> tuple[str, bool]:
        folded = self._fold_frames(decode(body).split("\n") if body else [], java)
        cache = self._body_cache[java]
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[body] = folded
        return folded

    def _fold_lines(self, lines: Iterable[str]) -> None:
        """The slow path: a state machine over the lines of a record, as the Perl script reads."""
        sample: _Sample | None = None
        for line in lines:
            if line.startswith("#"):
                continue
            if not line:  # an empty line ends a record, as in the Perl script
                if sample is not None:
                    self._count(sample, self._fold_frames(sample.frame_lines, sample.java))
                sample = None
                continue
            event = event_line(line)
            if event is not None:
                if sample is not None:
                    self._count(sample, self._fold_frames(sample.frame_lines, sample.java))
                sample = self._sample(line.lstrip(), event)
            elif sample is not None:
                sample.frame_lines.append(line)
            elif not line[:1].isspace() and line:
                self.warn("unrecognized perf script line", line)
        if sample is not None:
            self._count(sample, self._fold_frames(sample.frame_lines, sample.java))

    def _pname(self, comm: str, pid: str | None, tid: str | None) -> str:
        """The process name a stack starts with: ``comm``, ``comm-PID`` or ``comm-PID/TID``."""
        options = self.options
        name = UNKNOWN_PID if comm == UNKNOWN_THREAD else comm.replace(" ", "_")
        if tid is None:
            pid, tid = "?", pid
        if options.include_tid:
            return f"{name}-{pid}/{tid}"
        if options.include_pid:
            return f"{name}-{pid}"
        if len(self._names) >= CACHE_LIMIT:
            self._names.clear()
        self._names[comm] = name
        return name

    def _keep_event_cached(self, event: str) -> bool:
        keep = self._events.get(event)
        if keep is None:
            keep = self._events[event] = self._keep_event(event)
        return keep

    def _sample(self, header: str, event: re.Match[str]) -> _Sample | None:
        """Parse an event line; None when the event filter drops the sample."""
        comm, pid, tid = event.group(1, 2, 3)
        frame_lines = []
        found = P.PERIOD_EVENT.search(header)
        if found is None:
            found = P.INLINE_FRAME.search(header)
            if found is not None:
                frame_lines.append(found.group(3))
        period = 1
        if found is not None:
            if found.group(1) and self.options.period_weights:
                period = int(found.group(1))
            if not self._keep_event_cached(found.group(2)):
                return None
        return _Sample(self._pname(comm, pid, tid), period, comm.startswith("java"), frame_lines)

    def empty_reason(self) -> str | None:
        """Why nothing was folded, when records were read but ``--event-filter`` kept none of
        them (naming the events the input has); None otherwise."""
        if self.samples or not self._events or self.options.event_filter is None:
            return None
        present = ", ".join(sorted(self._events))
        return (
            f"no samples of event {self.options.event_filter!r} (--event-filter); "
            f"the input has {present}"
        )

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
        key = (sample.pname, folded)
        self._tallies[key] = self._tallies.get(key, 0) + sample.period
        self.samples += 1

    # -- frames ------------------------------------------------------------

    def _fold_frames(self, lines: list[str], java: bool) -> tuple[str, bool]:
        """Frame lines (leaf first) to ``(frames root first joined by ';', drop the comm?)``."""
        cache = self._line_cache[java]
        keys = list(self._srcline_pairs(lines)) if self.options.srcline else lines
        groups = [cache.get(key) for key in keys]  # each line's frames, joined by ';'
        if None in groups:
            groups = [
                self._cache_line(key, java) if frames is None else frames
                for key, frames in zip(keys, groups, strict=True)
            ]
        groups.reverse()
        stack = ";".join(filter(None, groups))
        if self._skip:
            return skip_callers(stack.split(";") if stack else [], self._skip)
        return stack, False

    def _cache_line(self, key: str, java: bool) -> str:
        line, _, source = key.partition("\n")
        frames = ";".join(self._line_frames(line, java, source))
        cache = self._line_cache[java]
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = frames
        return frames

    @staticmethod
    def _srcline_pairs(lines: list[str]) -> Iterator[str]:
        """``perf script -F+srcline`` puts a source line after a frame where it knows one:
        join each frame line with its source line, if any, as ``frame\nsource``."""
        index = 0
        while index < len(lines):
            line = lines[index]
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if following.strip() and frame_line(following) is None:
                yield f"{line}\n{following}"
                index += 2
            else:
                yield line
                index += 1

    def _line_frames(self, line: str, java: bool, source: str) -> tuple[str, ...]:
        """The frames of one ``ip symbol (module)`` line; more than one when inlined (``a->b``).

        ``source`` is the frame's source line under ``--srcline``, else empty."""
        match = frame_line(line)
        if match is None:
            if line.strip():
                self.warn("unrecognized perf script line", line)
            return ()
        pc, raw, module = match.group(1, 2, 3)
        if module.count("(") != module.count(")"):
            pc, raw, module = split_balanced(line) or (pc, raw, module)
        module = module.removesuffix(" (deleted)")
        if self._inliner is not None:
            chain = self._inliner.chain(pc, raw, module)
            if chain is not None:
                return (chain,)
        if self._maps is not None:
            raw = self._map_symbol(pc, module) or raw
        raw = P.OFFSET.sub("", raw)
        if raw.startswith("("):
            return ()
        frames: list[str] = []
        unknown = False
        for index, part in enumerate(raw.split("->")):
            if part == "[unknown]":
                unknown = unknown or module == "[unknown]"
                part = self._unknown_name(pc, module)
            func = self._tidy(part, java)
            frames.append(self._annotate(func, module, inlined=index > 0))
        if source and not unknown:
            frames[-1] += srcline_suffix(source)
        return tuple(frames)

    def _map_symbol(self, pc: str, module: str) -> str | None:
        """The name of a perf-map frame in the process's map, if the resolver has one."""
        assert self._maps is not None
        found = P.PERF_MAP_MODULE.fullmatch(module)
        if found is None:
            return None
        try:
            address = int(pc, 16)
        except ValueError:
            return None
        return self._maps(int(found.group(1)), address)

    def _unknown_name(self, pc: str, module: str) -> str:
        name = module.rsplit("/", 1)[-1] if module != "[unknown]" else "unknown"
        return f"[{name} <{pc}>]" if self.options.include_addrs else f"[{name}]"

    @staticmethod
    def _tidy(func: str, java: bool) -> str:
        func = func.replace(";", ":")
        if "(" in func and not P.GO_METHOD.search(func):
            func = strip_arguments(func)
        func = tidy_rust(func).replace('"', "").replace("'", "")
        if java and "/" in func and func.startswith("L"):
            func = func[1:]
        return func

    def _annotate(self, func: str, module: str, inlined: bool) -> str:
        options = self.options
        if inlined:
            return func if "_[i]" in func else func + "_[i]"
        if options.annotate_kernel and P.KERNEL_MODULE.search(module) and "unknown" not in module:
            return func + "_[k]"
        if options.annotate_jit and P.JIT_MODULE.search(module):
            return func if "_[j]" in func else func + "_[j]"
        return func


def make_inliner(options: PerfOptions, tools: BinaryTools | None) -> Inliner | None:
    if not options.inline:
        return None
    if tools is None:
        raise ValueError("PerfOptions(inline=True) needs tools that run addr2line and nm")
    from flamed.collapse.inline import Inliner

    return Inliner(tools, options.context)


def frame_line(line: str) -> re.Match[str] | None:
    """Match ``ip symbol (module)``: the module ends at the line's last ``)``.

    Cutting the line there first keeps the match linear in the line's length
    (``(.+) \\((.*)\\)`` on the whole line is quadratic without a ``)``).
    """
    return P.FRAME_LINE.match(line, 0, line.rfind(")") + 1)


def event_line(line: str) -> re.Match[str] | None:
    """Match an event line. Without call chains perf indents it and puts the frame on it."""
    if not line[:1].isspace():
        return P.EVENT_LINE.match(line)
    stripped = line.lstrip()
    if P.INLINE_FRAME.search(stripped):
        return P.EVENT_LINE.match(stripped)
    return None


def count_uniform(data: bytes | memoryview, by_pid: bool) -> tuple[bytes, dict[Record, int]] | None:
    """Cut input at UNIFORM_HEAD and count alike records (by comm, with ``by_pid`` by
    pid/tid too). Gives the text before the first cut (the first record and anything
    before it) and the distinct records' counts in order of first appearance; None
    when a record between two cuts is not of the uniform shape."""
    head = P.UNIFORM_HEAD if by_pid else P.UNIFORM_HEAD_BY_COMM
    parts = head.split(data)
    stride = head.groups + 1
    if len(parts) <= stride:
        return None
    comms, rests = parts[1::stride], parts[stride::stride]
    rests[-1] = rests[-1].rstrip(b"\n")
    keys = (comms, parts[2::stride], rests) if by_pid else (comms, rests)
    from collections import Counter  # only on this path: start-up time counts

    alike = Counter(zip(*keys, strict=True))
    records: dict[Record, int] = {}
    for key, count in alike.items():
        record = parse_uniform(key[0], key[1] if by_pid else None, key[-1])
        if record is None:
            return None
        records[record] = records.get(record, 0) + count
    return parts[0], records


def parse_uniform(comm: bytes, ids: bytes | None, rest: bytes) -> Record | None:
    """Parse a record cut by UNIFORM_HEAD: ``rest`` is its event line after the first
    colon and its frame lines. None when RECORD would not read it as one record."""
    tail, _, body = rest.partition(b"\n")
    found = P.UNIFORM_TAIL.fullmatch(tail)
    if found is None or (body and (body[0] not in b" \t" or P.UNINDENTED.search(body))):
        return None
    pid = tid = None
    if ids is not None:
        pid, _, tid = ids.partition(b"/")
        tid = tid.lstrip(b"/") or None
    return comm, pid, tid, found.group(1), found.group(2), body


def decode_optional(data: bytes | None) -> str | None:
    return None if data is None else decode(data)


def event_base(event: str) -> str:
    """An event's name without its modifiers: ``cycles:ppp`` -> ``cycles``. (Not a regular
    expression: the C path calls this, and importing re cost ~8 ms of every start.)"""
    body, newline = (event[:-1], "\n") if event.endswith("\n") else (event, "")
    head, colon, modifiers = body.rpartition(":")
    if colon and modifiers and not modifiers.strip(EVENT_MODIFIER_LETTERS):
        return head + newline
    return event


def strip_arguments(func: str) -> str:
    """Cut a C++/Java argument list: everything from the first ``(`` outside template brackets.

    ``(anonymous namespace)`` is kept. Where brackets do not balance
    (``operator<<``), the first ``(`` is taken, as the Perl script does.
    """
    starts = [m.start() for m in P.ARGS_START.finditer(func)]
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
    import re  # only on this path: start-up time counts

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
        if P.EVENT_LINE.match(line) and (
            P.PERIOD_EVENT.search(line) or P.INLINE_FRAME.search(line)
        ):
            following = lines[index + 1]
            return bool(frame_line(following) or P.EVENT_LINE.match(following))
    return None if len(head) < 64 * 1024 else False
