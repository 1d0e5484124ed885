"""The contract between sampling sessions and the daemon.

A session samples one target for as long as it runs and hands each completed
bucket to ``on_chunk`` as a ``Chunk``. Its ``status`` is read by the daemon's
status API and metrics at any time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from flamed.collapse.folded import Folded

CallGraph = Literal["fp", "dwarf", "lbr"]
Backend = Literal["auto", "perf", "dtrace"]
State = Literal["starting", "running", "waiting", "error", "stopped"]


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


@dataclass
class SessionStatus:
    """What a session reports about itself; updated in place by the session."""

    state: State = "starting"
    last_error: str | None = None
    pids: tuple[int, ...] = ()
    backend: str = ""
    event: str = ""
    restarts: dict[str, int] = field(default_factory=dict)
    chunks_dropped: dict[str, int] = field(default_factory=dict)
    samples_lost: int = 0
    """Samples the profiler reported lost (perf: its ring buffer was full, e.g. flamed stalled)."""
    samples_late: int = 0
    """Samples read after their bucket was handed out (handed out again as a late part)."""


# Every reason a session or the daemon counts a restart or a lost chunk under.
# Metrics report each of them from the start (at 0), so no series appears later.
RESTART_REASONS = ("crash", "error", "exit", "rss", "stalled", "targets")
DROP_REASONS = ("disk_backlog", "stale")

ChunkSink = Callable[[Chunk], None]


class Session(Protocol):
    """A running sampler. ``run()`` returns after ``stop()``; chunks go to the sink."""

    spec: TargetSpec
    status: SessionStatus

    async def run(self) -> None: ...

    async def stop(self) -> None: ...
