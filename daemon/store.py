"""Rolling windows of folded stacks, one per target, in memory.

A window is a time-ordered list of immutable buckets. A bucket keeps its stacks
as a tuple of interned strings (shared by every bucket that saw the same stack)
and its counts as an ``array('d')``: about 16 bytes per stack and bucket, plus
each distinct stack once. At most ``max_stacks`` stacks per bucket: the rarest
ones beyond that are summed into ``[other]``. Old buckets are rolled up into
longer ones, and their stacks evicted to disk (``cold``: read back through the
window's ``read_cold``, see ``flamed.daemon.persist``).

Queries merge the buckets that overlap a time range; merged results are cached
until the window changes. Merging only reads immutable buckets, so it may run in
a worker thread while the event loop adds new buckets.
"""

from __future__ import annotations

import bisect
import math
import sys
from array import array
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from flamed.collapse.folded import OTHER, Count, Folded, bytewise_key, top

CACHE_ENTRIES = 4


@dataclass(frozen=True)
class Bucket:
    """One completed bucket: [start, end) in unix seconds, its stacks and counts."""

    start: float
    end: float
    stacks: tuple[str, ...]
    counts: array[float]
    samples: int
    cold: bool = False
    """Its stacks are on disk only (read again by queries); ``stacks`` is empty."""

    @property
    def key(self) -> int:
        return round(self.start * 1000)

    def folded(self) -> Folded:
        return Folded(
            {stack: as_count(c) for stack, c in zip(self.stacks, self.counts, strict=True)}
        )

    def file_name(self) -> str:
        return f"{round(self.start * 1000)}-{round(self.end * 1000)}.folded.gz"

    def chilled(self) -> Bucket:
        """The same bucket without its stacks in memory."""
        return Bucket(self.start, self.end, (), array("d"), self.samples, cold=True)


ColdReader = Callable[[Bucket], Folded | None]
MERGE_SLACK = 2
"""A merge holds at most this many times max_stacks before summing the rarest into [other]."""


def bucket_key(bucket: Bucket) -> int:
    return bucket.key


def bucket_start(bucket: Bucket) -> float:
    return bucket.start


def bucket_end(bucket: Bucket) -> float:
    return bucket.end


def as_count(value: float) -> Count:
    return int(value) if value.is_integer() else value


def cap_stacks(folded: Folded, max_stacks: int) -> Folded:
    """Keep the ``max_stacks - 1`` heaviest stacks; sum the rest into ``[other]``."""
    if len(folded) <= max_stacks:
        return folded
    return top(folded, max_stacks - 1, OTHER)


def make_bucket(
    start: float, end: float, folded: Folded, max_stacks: int, samples: int | None = None
) -> Bucket:
    """A bucket of ``folded``; ``samples`` defaults to its total count."""
    capped = cap_stacks(folded, max_stacks)
    stacks = tuple(sys.intern(stack) for stack in capped.counts)
    counts = array("d", (float(count) for count in capped.counts.values()))
    total = int(capped.total()) if samples is None else samples
    return Bucket(start, end, stacks, counts, total)


def merge_buckets(
    buckets: Iterable[Bucket], max_stacks: int, read_cold: ColdReader | None = None
) -> Folded:
    """Sum buckets into one profile, capped at ``max_stacks`` stacks like ``cap_stacks``.

    Cold buckets are read with ``read_cold`` (skipped when it returns None). To
    bound memory, the running sum is capped whenever it exceeds MERGE_SLACK times
    ``max_stacks``; a stack rare at first and common later may then be summed
    into [other] (the profile's total is always exact).
    """
    merged: dict[str, float] = {}
    get = merged.get
    for bucket in buckets:
        pairs: Iterable[tuple[str, float]]
        if bucket.cold:
            folded = read_cold(bucket) if read_cold is not None else None
            pairs = folded.counts.items() if folded is not None else ()
        else:
            pairs = zip(bucket.stacks, bucket.counts, strict=True)
        for stack, count in pairs:
            merged[stack] = get(stack, 0.0) + count
        if len(merged) > MERGE_SLACK * max_stacks:
            merged = cap_counts(merged, max_stacks)
            get = merged.get
    if len(merged) > max_stacks:
        merged = cap_counts(merged, max_stacks)
    return Folded({stack: as_count(count) for stack, count in merged.items()})


def cap_counts(counts: dict[str, float], max_stacks: int) -> dict[str, float]:
    """``cap_stacks`` for a plain dict, without sorting every stack (big merges)."""
    rest = counts.pop(OTHER, 0.0)
    keep = max_stacks - 1
    values = sorted(counts.values(), reverse=True)
    if len(values) <= keep:
        counts[OTHER] = rest
        return counts
    threshold = values[keep - 1]
    kept = {stack: count for stack, count in counts.items() if count > threshold}
    ties = sorted(
        (stack for stack, count in counts.items() if count == threshold), key=bytewise_key
    )
    for stack in ties[: keep - len(kept)]:
        kept[stack] = threshold
    kept[OTHER] = rest + sum(values) - sum(kept.values())
    return kept


@dataclass(frozen=True)
class Selection:
    """The buckets a query covers; ``key`` names the selection for caches and ETags."""

    buckets: tuple[Bucket, ...]
    generation: int

    @property
    def key(self) -> tuple[int, int, int, int]:
        if not self.buckets:
            return (self.generation, 0, 0, 0)
        return (self.generation, self.buckets[0].key, self.buckets[-1].key, len(self.buckets))

    @property
    def start(self) -> float | None:
        return self.buckets[0].start if self.buckets else None

    @property
    def end(self) -> float | None:
        return self.buckets[-1].end if self.buckets else None


class Window:
    """The buckets of one target, oldest first, with a small cache of merged queries."""

    def __init__(self, name: str, max_stacks: int, read_cold: ColdReader | None = None) -> None:
        self.name = name
        self.max_stacks = max_stacks
        self.read_cold = read_cold
        self.buckets: list[Bucket] = []
        self.generation = 0
        self.entries = 0
        """Stack entries over all buckets: what memory grows with (the window_stacks gauge)."""
        self._cache: OrderedDict[tuple[int, int, int, int], Folded] = OrderedDict()

    def add(self, bucket: Bucket) -> Bucket:
        """Insert a bucket in time order; one with the same start is merged into it (a late
        part of a bucket from the sampler; a cold one is read back from disk for that)."""
        index = bisect.bisect_left(self.buckets, bucket.key, key=bucket_key)
        if index < len(self.buckets) and self.buckets[index].key == bucket.key:
            old = self.buckets[index]
            both = merge_buckets((old, bucket), self.max_stacks, self.read_cold)
            end, samples = max(old.end, bucket.end), old.samples + bucket.samples
            bucket = make_bucket(old.start, end, both, self.max_stacks, samples)
            self._track(old, -1)
            self.buckets[index] = bucket
        else:
            self.buckets.insert(index, bucket)
        self._track(bucket, 1)
        self._changed()
        return bucket

    def add_many(self, buckets: Iterable[Bucket]) -> None:
        """Add buckets loaded from disk; those already in memory (same start) are kept as is."""
        have = {bucket.key for bucket in self.buckets}
        fresh = sorted((b for b in buckets if b.key not in have), key=bucket_key)
        for bucket in fresh:
            self._track(bucket, 1)
        self.buckets = sorted([*self.buckets, *fresh], key=bucket_key)
        self._changed()

    def rollup(self, cutoff: float, size: float) -> list[tuple[Bucket, list[Bucket]]]:
        """Merge the buckets that ended before ``cutoff`` into ``size``-long ones.

        Buckets are grouped by ``floor(start / size)``; only groups whose whole
        span ended before the cutoff are merged. Cold members are read back with
        ``read_cold``; a group with a member that cannot be read stays as it is.
        Returns (new bucket, replaced).
        """
        groups: dict[int, list[Bucket]] = {}
        for bucket in self.buckets:
            if bucket.end > cutoff:
                break
            slot = math.floor(bucket.start / size)
            if bucket.end - bucket.start < size * 0.99 and (slot + 1) * size <= cutoff:
                groups.setdefault(slot, []).append(bucket)
        done = []
        for members in groups.values():
            merged = self._merge_all(members) if len(members) > 1 else None
            if merged is None:
                continue
            samples = sum(member.samples for member in members)
            coarse = make_bucket(
                members[0].start, members[-1].end, merged, self.max_stacks, samples
            )
            done.append((coarse, members))
        if done:
            self._replace(done)
        return done

    def _merge_all(self, members: list[Bucket]) -> Folded | None:
        """The members merged, cold ones read back one at a time (never all at once: a
        10-minute roll-up would hold 60 buckets' stacks); None if one cannot be read."""
        unreadable: list[Bucket] = []

        def read(bucket: Bucket) -> Folded | None:
            folded = self.read_cold(bucket) if self.read_cold is not None else None
            if folded is None:
                unreadable.append(bucket)
            return folded

        merged = merge_buckets(members, self.max_stacks, read)
        return None if unreadable else merged

    def _replace(self, done: list[tuple[Bucket, list[Bucket]]]) -> None:
        gone = {id(member) for _, members in done for member in members}
        for coarse, members in done:
            for member in members:
                self._track(member, -1)
            self._track(coarse, 1)
        kept = [bucket for bucket in self.buckets if id(bucket) not in gone]
        self.buckets = sorted([*kept, *(coarse for coarse, _ in done)], key=bucket_key)
        self._changed()

    def evict(self, before: float, keep: Collection[int] = ()) -> int:
        """Drop from memory the stacks of buckets that ended before ``before`` (kept on disk).

        Buckets whose key is in ``keep`` (their file could not be written) stay whole.
        """
        count = 0
        for index, bucket in enumerate(self.buckets):
            if bucket.end > before:
                break
            if not bucket.cold and bucket.key not in keep:
                self._track(bucket, -1)
                self.buckets[index] = bucket.chilled()
                count += 1
        if count:
            self._changed()
        return count

    def prune(self, before: float) -> list[Bucket]:
        """Drop the buckets that ended before ``before``; returns them."""
        count = 0
        while count < len(self.buckets) and self.buckets[count].end <= before:
            count += 1
        dropped, self.buckets = self.buckets[:count], self.buckets[count:]
        for bucket in dropped:
            self._track(bucket, -1)
        if dropped:
            self._changed()
        return dropped

    def select(self, start: float, end: float) -> Selection:
        """The buckets that overlap [start, end)."""
        low = bisect.bisect_right(self.buckets, start, key=bucket_end)
        high = bisect.bisect_left(self.buckets, end, key=bucket_start)
        chosen = tuple(b for b in self.buckets[low:high] if b.end > start and b.start < end)
        return Selection(chosen, self.generation)

    def cached(self, selection: Selection) -> Folded | None:
        folded = self._cache.get(selection.key)
        if folded is not None:
            self._cache.move_to_end(selection.key)
        return folded

    def remember(self, selection: Selection, folded: Folded) -> None:
        if selection.generation != self.generation:
            return
        self._cache[selection.key] = folded
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)

    def merge(self, selection: Selection) -> Folded:
        """Merged profile of a selection (safe to call from a worker thread)."""
        merged = merge_buckets(selection.buckets, self.max_stacks, self.read_cold)
        if any(bucket.cold for bucket in selection.buckets):
            trim_memory()  # what was read from disk was freed: give it back to the system
        return merged

    def stacks(self) -> int:
        """Stack entries held over all buckets (a stack seen in 3 buckets counts 3 times)."""
        return self.entries

    @property
    def oldest(self) -> float | None:
        return self.buckets[0].start if self.buckets else None

    @property
    def newest(self) -> float | None:
        return self.buckets[-1].end if self.buckets else None

    def samples_since(self, since: float) -> int:
        return sum(b.samples for b in reversed(self.buckets) if b.end > since)

    def _track(self, bucket: Bucket, step: int) -> None:
        self.entries += step * len(bucket.stacks)

    def _changed(self) -> None:
        self.generation += 1
        self._cache.clear()


_LIBC: list[object] = []


def trim_memory() -> None:
    """Return freed heap memory to the system (glibc's malloc_trim); a no-op elsewhere.

    Stack strings are longer than pymalloc's small-object limit, so after a
    merge that read many cold buckets their memory sits free inside malloc's
    heap; without this the process keeps its peak RSS for good.
    """
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    trim = _LIBC[0]
    if callable(trim):
        trim(0)
