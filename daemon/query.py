"""What a request asks of the store: one target's buckets over one time range.

``Service.query(target, span)`` makes a ``Query`` on the event loop; its
``folded()`` may then run in a worker thread. It merges the buckets once (the
window's cache first, shared by every query of the same buckets) and hands the
result back to the window's cache on the loop. A target the daemon does not
know is an ``UnknownTarget`` (the API answers 404).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from flamed.collapse.errors import FlamedError
from flamed.collapse.folded import Folded
from flamed.collapse.hotcold import hot_cold
from flamed.collapse.python import python_counts
from flamed.collector.base import PROFILE_TYPES
from flamed.daemon.store import Selection, Window, bucket_start
from flamed.daemon.timerange import TimeRange

QUERY_TYPES = (*PROFILE_TYPES, "hotcold")
"""What ``type=`` may ask for: a profile type, or ``hotcold`` (CPU and off-CPU in one)."""

OnLoop = Callable[[Callable[[], None]], None]
"""Runs a callable on the event loop's thread, from any thread."""


class UnknownTarget(FlamedError):
    """No target of that name (configured now, or whose history is still kept)."""


class NoSuchProfile(UnknownTarget):
    """The target has no profile of that type (``offcpu`` where it is not recorded)."""


class ProfileQuery(Protocol):
    """What the renders read of a query (``Query``, ``HotColdQuery``)."""

    target: str
    span: TimeRange
    frequency: int
    profile: str
    selection: Selection

    @property
    def key(self) -> tuple[object, ...]: ...

    @property
    def samples(self) -> int: ...

    def folded(self) -> Folded: ...


class Query:
    """A target's buckets over ``span``, merged once by ``folded()`` (thread-safe)."""

    def __init__(
        self,
        target: str,
        span: TimeRange,
        window: Window,
        frequency: int,
        on_loop: OnLoop,
        profile: str = "cpu",
    ) -> None:
        self.target = target
        self.span = span
        self.profile = profile
        """``cpu`` (counts are samples) or ``offcpu`` (microseconds off CPU)."""
        self.frequency = frequency
        """Samples per second per CPU the target is sampled at (the period of its pprof)."""
        self.selection = window.select(span.start, span.end)
        self._window = window
        self._on_loop = on_loop
        self._cached = window.cached(self.selection)
        self._folded: Folded | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> tuple[object, ...]:
        """Names the buckets covered: what ETags and caches are keyed on."""
        return self.target, self.profile, self.selection.key

    @property
    def samples(self) -> int:
        return sum(bucket.samples for bucket in self.selection.buckets)

    def folded(self) -> Folded:
        """The merged profile; the first call merges (in any thread), later ones reuse it."""
        with self._lock:
            if self._folded is None:
                self._folded = self._merge() if self._cached is None else self._cached
            return self._folded

    def _merge(self) -> Folded:
        window, selection = self._window, self.selection
        folded = window.merge(selection)
        self._on_loop(lambda: window.remember(selection, folded))
        return folded


class HotColdQuery:
    """A target's CPU and off-CPU profiles over one range as one, in microseconds
    (``flamed.collapse.hotcold``); its selection holds the buckets of both."""

    profile = "hotcold"

    def __init__(self, cpu: Query, offcpu: Query) -> None:
        self.target, self.span, self.frequency = cpu.target, cpu.span, cpu.frequency
        self.parts = (cpu, offcpu)
        both = sorted((*cpu.selection.buckets, *offcpu.selection.buckets), key=bucket_start)
        self.selection = Selection(tuple(both), cpu.selection.generation)

    @property
    def us_per_sample(self) -> float:
        return 1e6 / self.frequency

    @property
    def key(self) -> tuple[object, ...]:
        cpu, offcpu = self.parts
        return self.target, self.profile, cpu.selection.key, offcpu.selection.key

    @property
    def samples(self) -> int:
        """Microseconds, on CPU (samples turned to time) and off."""
        cpu, offcpu = self.parts
        return round(cpu.samples * self.us_per_sample) + offcpu.samples

    def folded(self) -> Folded:
        cpu, offcpu = self.parts
        return hot_cold(cpu.folded(), offcpu.folded(), self.us_per_sample)


class PythonView:
    """A query's stacks in the Python view (``flamed.collapse.python``): ``py::`` frames
    named as Python functions, the interpreter's frames between them left out; stacks
    without Python frames as they are."""

    def __init__(self, query: ProfileQuery) -> None:
        self.query = query
        self.target, self.span, self.frequency = query.target, query.span, query.frequency
        self.profile, self.selection = query.profile, query.selection

    @property
    def key(self) -> tuple[object, ...]:
        return *self.query.key, "python"

    @property
    def samples(self) -> int:
        return self.query.samples

    def folded(self) -> Folded:
        return Folded(python_counts(self.query.folded().counts))
