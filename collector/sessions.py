"""The factory the daemon and ``flamed record`` use: a spec in, a ``Session`` out."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from flamed.collapse.errors import UsageError
from flamed.collector.base import ChunkSink, Session, TargetSpec
from flamed.collector.runner import GRACE, TRACEFS, SamplingSession, SessionOptions
from flamed.collector.targets import spec_kind


def choose_backend(spec: TargetSpec, platform: str = sys.platform) -> str:
    """``perf`` on Linux, ``dtrace`` on macOS and the BSDs, unless the spec says."""
    if spec.backend != "auto":
        return spec.backend
    return "dtrace" if platform.startswith(("darwin", "freebsd", "sunos")) else "perf"


def create_session(
    spec: TargetSpec,
    *,
    bucket_seconds: float,
    on_chunk: ChunkSink,
    perf_path: str | None = None,
    dtrace_path: str | None = None,
    proc_root: Path = Path("/proc"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    systemctl_path: str | None = "systemctl",
    clock: Callable[[], float] = time.time,
    grace: float = GRACE,
    stop_timeout: float = 10.0,
    backoff_initial: float = 1.0,
    backoff_max: float = 60.0,
    fail_fast: bool = False,
    event: str | None = None,
    mmap_pages: int | None = None,
    perf_rss_limit: int = 512 << 20,
    stall_timeout: float | None = None,
    perf_maps: bool = True,
    java_perfmap: bool = False,
    jitdump: bool = False,
    python_view: bool = False,
    py_spy_path: str | None = None,
    py_spy_native: bool = False,
    platform: str = sys.platform,
    profile: str = "cpu",
    bpftrace_path: str | None = None,
    min_block_us: int = 1000,
    tracefs: tuple[Path, ...] = TRACEFS,
) -> Session:
    """A session for ``spec`` (not started: ``await session.run()``; ``await session.stop()``).

    ``profile="offcpu"`` makes the off-CPU session (bpftrace, Linux) instead of the CPU one.
    Raises ``UsageError`` for a spec that sets no target or more than one, a bad
    regular expression, or a target the chosen backend cannot sample.
    """
    spec_kind(spec)
    options = SessionOptions(
        bucket_seconds=bucket_seconds,
        perf_path=perf_path or "perf",
        dtrace_path=dtrace_path or "dtrace",
        proc_root=proc_root,
        cgroup_root=cgroup_root,
        systemctl_path=systemctl_path,
        clock=clock,
        grace=grace,
        stop_timeout=stop_timeout,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        fail_fast=fail_fast,
        event=event,
        mmap_pages=mmap_pages,
        perf_rss_limit=perf_rss_limit,
        stall_timeout=stall_timeout,
        perf_maps=perf_maps,
        java_perfmap=java_perfmap,
        jitdump=jitdump,
        python_view=python_view,
        py_spy_path=py_spy_path,
        py_spy_native=py_spy_native,
        bpftrace_path=bpftrace_path or "bpftrace",
        min_block_us=min_block_us,
        tracefs=tracefs,
    )
    if profile == "offcpu":
        from flamed.collector.offcpu import OffCpuSession

        return OffCpuSession(spec, options, on_chunk)
    if profile != "cpu":
        raise UsageError(f"target {spec.name!r}: unknown profile type {profile!r}")
    return build(spec, options, on_chunk, platform)


def build(
    spec: TargetSpec, options: SessionOptions, on_chunk: ChunkSink, platform: str = sys.platform
) -> SamplingSession:
    backend = choose_backend(spec, platform)
    if backend == "perf":
        from flamed.collector.perf import PerfSession

        return PerfSession(spec, options, on_chunk)
    if backend == "dtrace":
        from flamed.collector.dtrace import DTraceSession

        return DTraceSession(spec, options, on_chunk)
    if backend == "py-spy":
        from flamed.collector.pyspy import PySpySession

        return PySpySession(spec, options, on_chunk)
    raise UsageError(f"target {spec.name!r}: unknown backend {backend!r}")
