"""The off-CPU session (Linux): one long-running ``bpftrace`` summing blocked time per stack.

Why bpftrace: Debian 12 ships it (``apt-get install bpftrace``) with its own
LLVM, so it needs neither kernel headers (bcc's ``offcputime`` compiles C at
run time against ``/lib/modules/$(uname -r)/build``, missing on many servers)
nor a build step of ours; it resolves kernel and user symbols itself; and it
counts in the kernel, so a busy server's context switches never reach user
space: only the summed stacks do, once a dump.

The program watches ``tracepoint:sched:sched_switch``. When a thread of the
target leaves the CPU it stores the time and its kernel and user stacks (the
stacks where it blocked) by thread id, in one map (one update, one lookup, one
delete a switch: three maps cost 1.6 us a switch, measured); when that thread is
switched in again,
the time it was off CPU, in microseconds, is added to its stacks in a map if
it is at least ``min_block_us`` (short blocks cost a map update each and say
little). Two maps take turns: every ``dump_period`` the program switches to the
other one, prints and clears the one it left (bpftrace prints and clears from
user space, later: blocks added to a map meanwhile would be lost, 7 % of them
in a test), then a marker with the time (``nsecs``: ``CLOCK_MONOTONIC``, as perf's ``-k``); the
session folds each dump with the bpftrace collapser (offsets like ``+35``
dropped, so frames read as in perf's profile) into the bucket of its middle.
Blocked time counts at wake-up, in the dump of that moment. Off CPU means any
reason: sleeping, waiting for a lock or I/O, or waiting for a CPU (preempted).

Frame pointers limit the user stacks as they do perf's ``--call-graph fp``: a
leaf function built without them (Debian's glibc) hides its caller (for a
thread blocked in ``nanosleep``, the function that called ``nanosleep``).

Needs: bpftrace run as root (0.17 refuses any other user), tracefs mounted for
the tracepoint (``mount -t tracefs nodev /sys/kernel/tracing``), and BPF allowed
(``CAP_BPF`` and ``CAP_PERFMON``, or ``CAP_SYS_ADMIN``). Each missing piece is
a one-line error in the target's off-CPU status; its CPU profile goes on.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path

from flamed.collapse.bpftrace import BpftraceCollapser
from flamed.collapse.errors import ProfilerError
from flamed.collapse.folded import Folded
from flamed.collector.base import ChunkSink, TargetSpec
from flamed.collector.dumps import Dumps, DumpSession, dump_period
from flamed.collector.perf import explain_failure
from flamed.collector.procfs import cpu_seconds
from flamed.collector.runner import TRACEFS, Outcome, SessionOptions
from flamed.collector.targets import Resolution

MARKER = b"\n==flamed-offcpu-dump== "
"""Printed after each dump, before the time in ns; never folded."""
TRACEPOINT = "events/sched/sched_switch"
OFFSET = re.compile(r"\+\d+(?=;|$)")
INSTALL = "apt-get install bpftrace on Debian and Ubuntu, dnf install bpftrace on Fedora"
BPFTRACE_ENV = {"BPFTRACE_CACHE_USER_SYMBOLS": "1"}
"""bpftrace keeps each process's symbol tables instead of reading them again for every
dump (its own CPU at 5,000 switches/s: 2 % of a core without, 0.12 % with). A pid that
a new program reuses while bpftrace runs keeps the old one's names."""
PLAIN_PATH = re.compile(r"[\w./@:+=-]+")
"""A cgroup path bpftrace's string literal can hold as it is."""


class OffCpuCollapser(BpftraceCollapser):
    """bpftrace's map dumps, frames without their ``+offset`` (as perf's profile names them)."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0
        """Stacks seen so far (a dump with a stack closes the buckets before it)."""
        self.bytes_fed = 0

    def feed(self, data: bytes) -> None:
        self.bytes_fed += len(data)
        super().feed(data)
        self.samples = len(self.profile.counts)

    def finish(self) -> Folded:
        out = Folded()
        for stack, count in super().finish().items():
            out.add(OFFSET.sub("", stack), count)
        return out


def condition(resolution: Resolution, cgroup_root: Path) -> tuple[str, str]:
    """(what BEGIN sets up, the test that a thread leaving the CPU is the target's)."""
    if resolution.mode == "pids":
        wanted = " ".join(f"@flamed_want[{pid}] = 1;" for pid in resolution.pids)
        return wanted, "@flamed_want[pid]"
    if resolution.mode == "cgroup":
        path = str(cgroup_root / (resolution.cgroup or "").lstrip("/"))
        if not PLAIN_PATH.fullmatch(path):
            raise ProfilerError(f"off-CPU: cannot trace the cgroup {path!r} (unusual characters)")
        return "", f'cgroup == cgroupid("{path}")'
    return "", "tid != 0"  # the whole machine but the idle threads


def program(resolution: Resolution, cgroup_root: Path, min_block_us: int, period_ms: int) -> str:
    """The bpftrace program for one target set.

    ``pid_t`` (the type of the tracepoint's pids) is defined by hand: bpftrace 0.17 reads
    it from the kernel's BTF only with CAP_SYS_ADMIN, which the systemd drop-in does not
    grant, and fails without it."""
    setup, wanted = condition(resolution, cgroup_root)
    marker = MARKER.decode().replace("\n", "\\n")
    return f"""
#define pid_t int
BEGIN {{ {setup} }}
tracepoint:sched:sched_switch {{
    if ({wanted}) {{
        @flamed_off[tid] = (nsecs, kstack, ustack);
    }}
    $next = args->next_pid;
    $off = @flamed_off[$next];
    if ($off.0 != 0) {{
        $us = (nsecs - $off.0) / 1000;
        if ($us >= {min_block_us}) {{
            if (@flamed_odd) {{
                @odd[$off.1, $off.2, args->next_comm] = sum($us);
            }} else {{
                @even[$off.1, $off.2, args->next_comm] = sum($us);
            }}
        }}
        delete(@flamed_off[$next]);
    }}
}}
tracepoint:sched:sched_process_exit {{
    delete(@flamed_off[tid]);
}}
interval:ms:{period_ms} {{
    if (@flamed_odd) {{
        @flamed_odd = 0; print(@odd); clear(@odd);
    }} else {{
        @flamed_odd = 1; print(@even); clear(@even);
    }}
    printf("{marker}%lld\\n", nsecs);
}}
END {{
    clear(@odd); clear(@even); clear(@flamed_odd); {"clear(@flamed_want);" if setup else ""}
    clear(@flamed_off);
}}
"""


def tracefs_missing(roots: tuple[Path, ...]) -> ProfilerError | None:
    """The error to give when no tracefs shows the sched_switch tracepoint, else None."""
    if any((root / TRACEPOINT).exists() for root in roots):
        return None
    return ProfilerError(
        "off-CPU: tracefs is not mounted (bpftrace needs the sched:sched_switch "
        "tracepoint): mount -t tracefs nodev /sys/kernel/tracing"
    )


def offcpu_problems(
    bpftrace_path: str = "bpftrace", tracefs: tuple[Path, ...] = TRACEFS, euid: int | None = None
) -> list[str]:
    """What would stop an off-CPU session here, one line each (``flamed check-config``)."""
    problems = []
    if shutil.which(bpftrace_path) is None:
        problems.append(f"off-CPU: bpftrace not found ({bpftrace_path}): install it ({INSTALL})")
    if (os.geteuid() if euid is None else euid) != 0:
        problems.append("off-CPU: bpftrace runs only as root (see the systemd drop-in offcpu.conf)")
    missing = tracefs_missing(tracefs)
    if missing is not None:
        problems.append(str(missing))
    return problems


def explain_bpftrace(code: int | None, lines: list[str], proc_root: Path) -> ProfilerError:
    """One line for a bpftrace that ended by itself, from its stderr."""
    lines = [line for line in lines if "RLIMIT_MEMLOCK" not in line]
    text = "\n".join(lines)
    lowered = text.lower()
    if "only supports running as the root user" in lowered:
        return ProfilerError(
            "off-CPU: bpftrace runs only as root (run flamed as root: see the systemd "
            "drop-in offcpu.conf in the README)"
        )
    if "tracepoint not found" in lowered:
        return ProfilerError(
            "off-CPU: bpftrace finds no sched:sched_switch tracepoint: is tracefs mounted "
            "(mount -t tracefs nodev /sys/kernel/tracing)?"
        )
    if "operation not permitted" in lowered or "permission denied" in lowered:
        return ProfilerError(
            "off-CPU: BPF is not permitted: flamed needs CAP_BPF and CAP_PERFMON (or "
            "CAP_SYS_ADMIN) and kernel.unprivileged_bpf_disabled does not help root: "
            f"bpftrace said: {lines[-1][:200] if lines else 'no message'}"
        )
    return explain_failure("off-CPU: bpftrace", code, text, proc_root)


class OffCpuSession(DumpSession):
    """Sums one target's off-CPU time per stack with ``bpftrace``; a chunk per bucket."""

    backend = tool = "bpftrace"
    profile = "offcpu"

    def __init__(self, spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink) -> None:
        super().__init__(spec, options, on_chunk)
        self.status.event = f"sched_switch, blocks of {options.min_block_us} us or more"
        self.period_ms = dump_period(options.bucket_seconds)
        self.child_pid: int | None = None
        """The running bpftrace's pid."""
        self._child_cpu = 0.0

    def new_collapser(self) -> OffCpuCollapser:
        return OffCpuCollapser()

    def stamp_now(self) -> float:
        return time.monotonic()  # bpftrace's nsecs

    def clock_offset(self) -> float:
        return self.options.clock() - time.monotonic()

    def tool_cpu(self) -> float:
        """bpftrace's CPU in user space since the last chunk (printing, symbols); what the
        program costs in the kernel is spent by the threads it watches (see the benchmark)."""
        if self.child_pid is None:
            return 0.0
        total = cpu_seconds(self.options.proc_root, self.child_pid)
        spent = max(0.0, total - self._child_cpu)
        self._child_cpu = max(total, self._child_cpu)
        return spent

    async def sample(self, resolution: Resolution) -> Outcome:
        missing = tracefs_missing(self.options.tracefs)
        if missing is not None:
            raise missing
        options = self.options
        text = program(resolution, options.cgroup_root, options.min_block_us, self.period_ms)
        argv = [options.bpftrace_path, "-e", text]
        not_found = f"off-CPU: bpftrace not found ({argv[0]}): install it ({INSTALL})"
        proc = await self.start_child(argv, not_found, {**os.environ, **BPFTRACE_ENV})
        self.child_pid, self._child_cpu = proc.pid, 0.0
        dumps = Dumps(self.cutter, self.period_ms / 1000, self.stamp_now, MARKER, keep_tail=False)
        return await self.supervise(proc, dumps, resolution)

    async def before_stop(self, dumps: Dumps, exited: asyncio.Task[int]) -> None:
        """Wait for the next dump (a period at most): bpftrace's own exit dump resolves no
        user symbols, so it is not read, and what came since the last dump would be lost."""
        seen = dumps.count
        deadline = time.monotonic() + self.period_ms / 1000 + 0.5
        while dumps.count == seen and not exited.done() and time.monotonic() < deadline:
            await asyncio.wait([exited], timeout=0.05)

    def failure(self, code: int | None, stderr: list[str]) -> ProfilerError:
        return explain_bpftrace(code, stderr, self.options.proc_root)
