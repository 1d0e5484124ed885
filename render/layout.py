"""Folded stacks to frames: which rectangles a flame graph draws, in samples.

The rules are flamegraph.pl's, so that flamed draws exactly the frames it does:

* stacks are split on ``;`` (trailing empty frames dropped), optionally reversed
  (``--reverse``), then sorted as text lines (``stack COUNT``) are sorted, or
  kept in input order for a flame chart;
* consecutive stacks share a frame while their frame names agree from the root
  up; a frame spans the samples of the stacks that share it, so the same
  function can appear twice in a row when lines in between break the run;
* a frame narrower than ``minwidth`` (pixels at the given width, or a
  percentage of the total) is dropped, and with it everything above it;
* in a differential profile (two counts per stack) the width comes from the
  second count and the delta (second minus first) belongs to the leaf frame of
  each stack; the other frames get a delta of 0.

Everything here is pure: input is a sequence of stacks, output a :class:`Layout`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, pairwise
from operator import itemgetter
from types import ModuleType
from typing import NamedTuple

from flamed.collapse import speedups
from flamed.collapse.common import WarnOnce, get_logger
from flamed.collapse.folded import Count, Folded
from flamed.render.options import RenderOptions

LOGGER = "flamed.render"  # logging is imported at the first warning: start-up counts

XPAD = 10  # pixels left and right of the frames
# Counts are summed as C doubles on the C path: exact only below this total.
EXACT_TOTAL = 2**53

#: One input stack: (stack text, count that gives the width, delta or None).
Entry = tuple[str, Count, "float | None"]
Stacks = Folded | Mapping[str, Count] | Iterable[tuple[str, Count]]
DiffStacks = Mapping[str, tuple[Count, Count]] | Iterable[tuple[str, Count, Count]]


class Frame(NamedTuple):
    """One rectangle: ``name`` at ``depth`` (0 is the root), spanning samples
    ``[start, start + width)``; ``delta`` only in differential graphs."""

    name: str
    depth: int
    start: float
    width: float
    delta: float | None


@dataclass
class Layout:
    """The frames to draw and the totals the drawing needs."""

    frames: list[Frame] = field(default_factory=list)
    total: float = 0  # sum of the counts
    time_max: float = 0  # the graph's full width in samples (``--total`` may widen it)
    depth_max: int = 0
    max_delta: float = 1
    differential: bool = False

    @property
    def empty(self) -> bool:
        return not self.total


def split_frames(stack: str) -> list[str]:
    """Frames of a stack, root first; empty trailing frames are dropped, as Perl's split does."""
    frames = stack.split(";")
    if not frames[-1]:
        while frames and not frames[-1]:
            frames.pop()
    return frames


def plain_entries(stacks: Stacks) -> list[Entry]:
    """(stack, count) pairs, or a Folded, as layout entries; negative counts are skipped."""
    pairs = stacks.items() if isinstance(stacks, Folded | Mapping) else stacks
    if not isinstance(pairs, Collection):
        pairs = list(pairs)  # read twice below
    # (A profile's items are read in place: a list of ~40k pairs costs ~10 ms to free.)
    entries: list[Entry] = [(stack, count, None) for stack, count in pairs if count >= 0]
    if len(entries) < len(pairs):
        warn = WarnOnce(LOGGER)
        for stack, count in pairs:
            if count < 0:
                warn("stack with a negative count", stack)
    return entries


def diff_entries(stacks: DiffStacks) -> list[Entry]:
    """(stack, before, after) as entries: width from ``after``, delta ``after - before``."""
    if isinstance(stacks, Mapping):
        triples: Iterable[tuple[str, Count, Count]] = (
            (stack, pair[0], pair[1]) for stack, pair in stacks.items()
        )
    else:
        triples = stacks
    warn = WarnOnce(LOGGER)
    entries: list[Entry] = []
    for stack, before, after in triples:
        if before < 0 or after < 0:
            warn("stack with a negative count", stack)
            continue
        entries.append((stack, after, float(after - before)))
    return entries


def rebase(stack: str, base: frozenset[str]) -> str | None:
    """The stack from its leafmost frame named in ``base``; None if it has none."""
    frames = split_frames(stack)
    for index in range(len(frames) - 1, -1, -1):
        if frames[index] in base:
            return ";".join(frames[index:])
    return None


def transform(
    entries: list[Entry], options: RenderOptions, check_order: bool = True
) -> list[Entry]:
    """Apply ``--base`` and ``--reverse``, then order the stacks as flamegraph.pl does
    (``check_order`` False: in plain order; the C merge then checks it, see
    ``build_layout``)."""
    if options.base:
        base = frozenset(options.base)
        rebased = ((rebase(stack, base), count, delta) for stack, count, delta in entries)
        entries = [(stack, count, delta) for stack, count, delta in rebased if stack is not None]
    if options.reverse:
        entries = [
            (";".join(reversed(split_frames(stack))), count, delta)
            for stack, count, delta in entries
        ]
    if not sorts(options):
        return entries
    if options.base or options.reverse:
        entries = merge_duplicates(entries)
    entries.sort(key=itemgetter(0))
    if check_order and needs_line_order(entries):
        line_order(entries)
    return entries


def sorts(options: RenderOptions) -> bool:
    """Are the stacks sorted before they are merged (not a flame chart, not --no-sort)?"""
    return not (options.flamechart or (options.no_sort and not options.reverse))


def needs_line_order(entries: Sequence[Entry]) -> bool:
    """flamegraph.pl sorts whole "stack COUNT" lines, so when one stack is a prefix of
    another the space after it sorts it first -- unless a control character (below the
    space) follows the prefix. Only then does the order need the space; such a pair
    would be neighbours in plain order, so look there."""
    stacks = [entry[0] for entry in entries]
    prefixed = compress(pairwise(stacks), map(str.startswith, stacks[1:], stacks[:-1]))
    return any(control_follows_prefix(a, b) for a, b in prefixed)


def line_order(entries: list[Entry]) -> None:
    """Sort as flamegraph.pl sorts "stack COUNT" lines (see ``needs_line_order``)."""
    entries.sort(key=lambda entry: entry[0] + " ")


def control_follows_prefix(first: str, second: str) -> bool:
    """Does a control character follow ``first`` in ``second``, which starts with it?"""
    return len(second) > len(first) and second[len(first)] < " "


def chain_stack(stack: str) -> str:
    """flamegraph.pl's ``--colors chain``: after each ``--`` frame, the frames are a
    waker's, marked ``_[w]``. As there, a stack without ``--`` gets one on top."""
    first, *wakers = stack.split(";--;")
    marked = [";".join(frame + "_[w]" for frame in part.split(";")) for part in wakers]
    return ";--;".join([first, *marked]) if marked else first + ";--"


def merge_duplicates(entries: list[Entry]) -> list[Entry]:
    merged: dict[str, tuple[Count, float | None]] = {}
    for stack, count, delta in entries:
        seen = merged.get(stack)
        if seen is None:
            merged[stack] = (count, delta)
        else:
            old_delta = seen[1]
            new_delta = None if delta is None or old_delta is None else old_delta + delta
            merged[stack] = (seen[0] + count, new_delta)
    return [(stack, count, delta) for stack, (count, delta) in merged.items()]


def min_width_samples(options: RenderOptions, time_max: float) -> float:
    """``--minwidth`` in samples: a percentage of the total, or pixels at ``--width``."""
    if options.minwidth_percent:
        return time_max * options.minwidth / 100
    per_sample = (options.width - 2 * XPAD) / time_max
    return options.minwidth / per_sample


def build_layout(
    entries: list[Entry], options: RenderOptions, differential: bool = False
) -> Layout:
    """Merge the stacks into frames and drop the narrow ones; ``differential``: the entries
    have deltas."""
    module = speedups.module(speedups.RENDER)
    # The C merge compares each stack with the one before anyway: it checks the order
    # there, rather than a pass over every stack here (~13 ms of the 33 MB graph).
    c_checks = module is not None and options.colors != "chain" and sorts(options)
    entries = transform(entries, options, check_order=not c_checks)
    if options.colors == "chain":
        entries = [(chain_stack(stack), count, delta) for stack, count, delta in entries]
    total = sum(map(itemgetter(1), entries))
    layout = Layout(total=total, differential=differential)
    if not total:
        return layout
    time_max = total
    if options.total is not None and options.total >= total:
        time_max = options.total
    elif options.total:
        get_logger(LOGGER).warning(
            "--total %s is less than the actual total %s, so it is ignored", options.total, total
        )
    layout.time_max = time_max
    if differential:
        layout.max_delta = max([1.0, *(abs(entry[2] or 0) for entry in entries)])
    minimum = min_width_samples(options, time_max)
    native = module if total < EXACT_TOTAL else None
    if c_checks and native is None and needs_line_order(entries):
        line_order(entries)
    frames: list[Frame]
    if native is not None:  # sorted by depth, then start, as the sort below sorts
        frames = merge_natively(native, entries, minimum, differential, c_checks)
    else:
        frames = merge_frames(entries, minimum, differential)
        frames.sort(key=itemgetter(1, 2))  # depth, start
    if total >= minimum:
        frames.insert(0, Frame("", 0, 0, time_max, 0.0 if differential else None))
    layout.frames = frames
    layout.depth_max = frames[-1].depth if frames else 0  # sorted by depth
    return layout


def merge_natively(
    native: ModuleType, entries: list[Entry], minimum: float, differential: bool, check: bool
) -> list[Frame]:
    """The C merge; with ``check``, it stops where a control character follows a prefix,
    and the entries are merged again in ``line_order``."""
    frames: list[Frame] | None = native.merge_frames(entries, minimum, differential, Frame, check)
    if frames is not None:
        return frames
    line_order(entries)
    return merge_natively(native, entries, minimum, differential, False)


def merge_frames(entries: Sequence[Entry], minimum: float, differential: bool) -> list[Frame]:
    """flamegraph.pl's merge of consecutive stacks, closing frames as stacks diverge.

    Frames are opened as the stacks grow and closed when the next stack leaves
    them; a closed frame is kept if it is at least ``minimum`` samples wide.
    Start times grow with depth, so the kept frames of a closing run are a
    prefix of it, found by bisection rather than by looking at each one.
    """
    out: list[Frame] = []
    names: list[str] = []
    starts: list[float] = []
    deltas: list[float] = []
    time: float = 0
    for stack, count, delta in entries:
        frames = split_frames(stack)
        same = 0
        limit = min(len(names), len(frames))
        while same < limit and names[same] == frames[same]:
            same += 1
        if same < len(names):
            close_frames(out, names, starts, deltas if differential else None, same, time, minimum)
            del starts[same:]
            del deltas[same:]
        opened = len(frames) - same
        if opened:
            starts.extend([time] * opened)
            if differential:
                deltas.extend([0.0] * (opened - 1))
                deltas.append(delta or 0.0)
        names = frames
        time += count
    close_frames(out, names, starts, deltas if differential else None, 0, time, minimum)
    return out


def close_frames(
    out: list[Frame],
    names: list[str],
    starts: list[float],
    deltas: list[float] | None,
    first: int,
    time: float,
    minimum: float,
) -> None:
    """Keep the frames ``names[first:]`` ending at ``time`` that are wide enough."""
    end = bisect_right(starts, time - minimum, first)
    while end > first and time - starts[end - 1] < minimum:
        end -= 1
    while end < len(starts) and time - starts[end] >= minimum:
        end += 1
    for index in range(first, end):
        start = starts[index]
        delta = deltas[index] if deltas is not None else None
        out.append(Frame(names[index], index + 1, start, time - start, delta))


def layout_plain(stacks: Stacks, options: RenderOptions) -> Layout:
    return build_layout(plain_entries(stacks), options)


def layout_differential(stacks: DiffStacks, options: RenderOptions) -> Layout:
    entries = diff_entries(stacks)
    return build_layout(entries, options, differential=bool(entries))
