"""The contract between sampling sessions and the daemon.

A session samples one target for as long as it runs and hands each completed
bucket to ``on_chunk`` as a ``Chunk``. Its ``status`` is read by the daemon's
status API and metrics at any time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from flamed.collapse.folded import Folded

CallGraph = Literal["fp", "dwarf", "lbr"]
Backend = Literal["auto", "perf", "dtrace", "py-spy"]
State = Literal["starting", "running", "waiting", "error", "stopped"]
PROFILE_TYPES = ("cpu", "offcpu")
"""What a target's profiles measure: ``cpu`` counts samples on CPU, ``offcpu`` microseconds
threads spent blocked (off CPU), counted in the kernel."""


@dataclass(frozen=True)
class TargetSpec:
    """What to profile; exactly one of pids/process/cmdline/unit/all is set."""

    name: str
    pids: tuple[int, ...] = ()
    process: str | None = None
    """Regular expression on the command name (comm)."""
    cmdline: str | None = None
    """Regular expression on the full command line."""
    unit: str | None = None
    """A systemd unit; its cgroup is profiled."""
    all: bool = False
    """The whole machine."""
    frequency: int = 99
    call_graph: CallGraph = "fp"
    backend: Backend = "auto"

    def describe(self) -> str:
        """What it samples, in words: ``process name '^nginx$'``, ``the whole machine``."""
        if self.all:
            return "the whole machine"
        if self.pids:
            return "process id " + ",".join(map(str, self.pids))
        if self.process is not None:
            return f"process name {self.process!r}"
        if self.cmdline is not None:
            return f"command line {self.cmdline!r}"
        return f"unit {self.unit!r}"


@dataclass(frozen=True)
class Chunk:
    """One completed bucket of one target, folded."""

    target: str
    start: float
    end: float
    folded: Folded
    samples: int
    bytes_folded: int
    cpu_seconds: float
    """CPU time flamed spent folding it (perf script and the collapser)."""
    format: str = "perf"
    profile: str = "cpu"
    """One of PROFILE_TYPES; an ``offcpu`` chunk counts microseconds, not samples."""


@dataclass
class MapStats:
    """What reading JIT maps (perf maps, jitdump files) met, summed over all of them (never
    reset)."""

    lines: int = 0
    malformed: int = 0
    bytes_read: int = 0
    truncated: int = 0
    """Maps cut short at the memory bound."""
    refused: dict[str, int] = field(default_factory=dict)
    """Maps not read, by reason: one of ``MAP_REFUSALS``."""


MAP_REFUSALS = ("symlink", "not_regular", "owner", "unreadable")


@dataclass
class SessionStatus:
    """What a session reports about itself; updated in place by the session."""

    state: State = "starting"
    last_error: str | None = None
    last_error_time: float | None = None
    """When ``last_error`` happened, unix seconds."""
    last_error_past: bool = False
    """A whole bucket was sampled since ``last_error``: it is history, not how things are."""
    pids: tuple[int, ...] = ()
    backend: str = ""
    event: str = ""
    restarts: dict[str, int] = field(default_factory=dict)
    chunks_dropped: dict[str, int] = field(default_factory=dict)
    samples_lost: int = 0
    """Samples the profiler reported lost (perf: its ring buffer was full, e.g. flamed stalled)."""
    samples_late: int = 0
    """Samples read after their bucket was handed out (handed out again as a late part)."""
    records_fixed: dict[str, int] = field(default_factory=dict)
    """perf records mended on their way to perf script, by fix (``RECORD_FIXES``)."""
    jit_maps: dict[str, MapStats] = field(default_factory=dict)
    """The JIT maps the session reads, by kind (``perf-map``, ``jitdump``): live counters."""

    def error(self, message: str, when: float | None = None) -> None:
        """``message`` is the last error, happening now (or at ``when``)."""
        self.last_error = message
        self.last_error_time = time.time() if when is None else when
        self.last_error_past = False

    def sampled(self, start: float) -> None:
        """A bucket that began at ``start`` was sampled: an error before it is past."""
        if self.last_error_time is not None and start >= self.last_error_time:
            self.last_error_past = True


# Every reason a session counts a restart or a lost chunk under (the daemon never restarts one).
# Metrics report each of them from the start (at 0), so no series appears later.
RESTART_REASONS = ("crash", "rss", "stalled", "targets")
DROP_REASONS: tuple[str, ...] = ()
RECORD_FIXES = ("truncated", "dropped")
"""What perf's stream mender does to a KSYMBOL record perf script could not read."""

ChunkSink = Callable[[Chunk], None]


class Session(Protocol):
    """A running sampler. ``run()`` returns after ``stop()``; chunks go to the sink."""

    spec: TargetSpec
    status: SessionStatus

    async def run(self) -> None: ...

    async def stop(self) -> None: ...
