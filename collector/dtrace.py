"""The DTrace session (macOS): one long-running ``dtrace`` printing its aggregation often.

The D program counts user stacks at HZ and, every ``dump_period`` (at most a
second, a quarter of a bucket for short buckets), prints and clears the
aggregation and then a marker line of its own with the time (``walltimestamp``).
The session (``flamed.collector.dumps``) cuts dtrace's stdout at the markers and
gives each dump to the bucket of its middle.
On stop, dtrace gets SIGINT and prints what it holds (DTrace prints non-empty
aggregations at exit): that tail goes to the bucket of the moment it came.
"""

from __future__ import annotations

import re

from flamed.collapse.dtrace import DTraceCollapser, DTraceOptions
from flamed.collapse.errors import ProfilerError, UsageError
from flamed.collector.base import ChunkSink, TargetSpec
from flamed.collector.dumps import Dumps, DumpSession, dump_period
from flamed.collector.perf import explain_failure
from flamed.collector.runner import Outcome, SessionOptions
from flamed.collector.targets import Resolution

MARKER = b"\n==flamed-dump-end== "
"""Printed by the D program after each dump, before the time in ns; never folded."""
PLAIN_NAME = re.compile(r"\^?([\w.+-]+)\$?", re.ASCII)


def execname(spec: TargetSpec) -> str | None:
    """The plain process name a ``process`` pattern means (``nginx``, ``^nginx$``), or None."""
    if spec.process is None:
        return None
    found = PLAIN_NAME.fullmatch(spec.process)
    return found.group(1) if found else None


def check_spec(spec: TargetSpec) -> None:
    """DTrace samples pids, a plain process name, or everything."""
    if spec.pids or spec.all or execname(spec) is not None:
        return
    raise UsageError(
        f"target {spec.name!r}: the dtrace backend samples pids, a plain process name "
        "(execname) or the whole machine; not cmdline, unit or regular expressions"
    )


def predicate(spec: TargetSpec, resolution: Resolution) -> str:
    name = execname(spec)
    if name is not None:
        return f'execname == "{name}"'
    if resolution.mode == "pids":
        return " || ".join(f"pid == {pid}" for pid in resolution.pids)
    return ""


def d_program(frequency: int, period_ms: int, condition: str) -> str:
    guard = f" /{condition}/" if condition else ""
    marker = MARKER.decode().replace("\n", "\\n")
    return (
        f"profile-{frequency}{guard} {{ @[ustack()] = count(); }} "
        f'tick-{period_ms}ms {{ printa(@); trunc(@); printf("{marker}%d\\n", walltimestamp); }}'
    )


def dtrace_argv(dtrace_path: str, spec: TargetSpec, period_ms: int, condition: str) -> list[str]:
    program = d_program(spec.frequency, period_ms, condition)
    return [dtrace_path, "-x", "ustackframes=100", "-n", program]


class DTraceSession(DumpSession):
    """Samples one target with ``dtrace`` and folds its dumps into a chunk per bucket."""

    backend = tool = "dtrace"

    def __init__(self, spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink) -> None:
        check_spec(spec)
        super().__init__(spec, options, on_chunk)
        self.status.event = f"profile-{spec.frequency}"

    def resolve(self) -> Resolution:
        if self.spec.all or execname(self.spec) is not None:
            return Resolution("all")  # dtrace itself follows the name
        return super().resolve()

    def new_collapser(self) -> DTraceCollapser:
        return DTraceCollapser(DTraceOptions())

    async def sample(self, resolution: Resolution) -> Outcome:
        condition = predicate(self.spec, resolution)
        period = dump_period(self.options.bucket_seconds)
        argv = dtrace_argv(self.options.dtrace_path, self.spec, period, condition)
        missing = (
            f"dtrace not found ({argv[0]}): it ships with macOS (run as root; "
            "System Integrity Protection may need to allow dtrace)"
        )
        proc = await self.start_child(argv, missing)
        dumps = Dumps(self.cutter, period / 1000, self.stamp_now, MARKER)
        return await self.supervise(proc, dumps, resolution)

    def failure(self, code: int | None, stderr: list[str]) -> ProfilerError:
        return explain_failure("dtrace", code, "\n".join(stderr), self.options.proc_root)
