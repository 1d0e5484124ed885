"""The daemon's Prometheus metrics, through an explicit registry (a fresh one per test).

Counters the daemon increments live here as ordinary metric objects; values that
are cheap to read at scrape time (collector state, pids, window sizes, the
sessions' own restart and drop counts) come from ``TargetCollector``, which asks
a callable for one ``TargetReading`` per target. The exporters' metrics
(``ExportMetrics``) are registered when the first exporter starts. Labels are
bounded: target and exporter names come from the config, reasons and formats
from the code, routes from the router; never pids or stacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from flamed.collector.base import (
    DROP_REASONS,
    MAP_REFUSALS,
    RECORD_FIXES,
    RESTART_REASONS,
    MapStats,
)

RENDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DAEMON_DROP_REASONS = ("disk_backlog", "stale")
"""Chunks the daemon itself drops: the disk writer's queue was full, or older than retention."""
PUSH_RESULTS = ("success", "retry", "rejected")
PUSH_DROP_REASONS = ("queue_full", "too_old", "rejected", "shutdown")


@dataclass(frozen=True)
class TargetReading:
    """What the scrape-time collector reports for one target."""

    target: str
    up: bool
    pids: int
    stacks: int
    restarts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    samples_lost: int = 0
    samples_late: int = 0
    records_fixed: dict[str, int] = field(default_factory=dict)
    offcpu_up: bool | None = None
    """The off-CPU sampler runs (None: the target records no off-CPU profile)."""
    jit_maps: dict[str, MapStats] = field(default_factory=dict)
    """The JIT maps its sampler reads, by kind (none: the target reads no maps)."""


def add_by_reason(
    family: CounterMetricFamily, target: str, counts: dict[str, int], known: Iterable[str]
) -> None:
    """Every known reason (0 until it happens) and any other one that was counted."""
    for reason in sorted({*known, *counts}):
        family.add_metric([target, reason], counts.get(reason, 0))


class JitMapFamilies:
    """The JIT map counters, by target and kind of map (only targets that read maps)."""

    def __init__(self) -> None:
        labels = ["target", "kind"]
        self.lines = CounterMetricFamily(
            "flamed_jit_map_lines", "Entries read from JIT maps (perf-PID.map, jit-PID.dump)",
            labels=labels,
        )  # fmt: skip
        self.malformed = CounterMetricFamily(
            "flamed_jit_map_malformed", "Malformed JIT map entries skipped", labels=labels
        )
        self.truncated = CounterMetricFamily(
            "flamed_jit_map_truncated", "JIT maps cut short at the memory bound", labels=labels
        )
        self.refused = CounterMetricFamily(
            "flamed_jit_map_refused",
            "JIT maps not read (a symbolic link, not a regular file, another user's, unreadable)",
            labels=[*labels, "reason"],
        )

    def add(self, target: str, kind: str, stats: MapStats) -> None:
        self.lines.add_metric([target, kind], stats.lines)
        self.malformed.add_metric([target, kind], stats.malformed)
        self.truncated.add_metric([target, kind], stats.truncated)
        for reason in sorted({*MAP_REFUSALS, *stats.refused}):
            self.refused.add_metric([target, kind, reason], stats.refused.get(reason, 0))

    def families(self) -> tuple[Metric, ...]:
        return (self.lines, self.malformed, self.truncated, self.refused)


class TargetCollector(Collector):
    """Per-target gauges and session counters, read when Prometheus scrapes."""

    def __init__(self) -> None:
        self.read: Callable[[], Iterable[TargetReading]] = lambda: ()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "flamed_collector_up", "1 if the target's sampler runs", labels=["target"]
        )
        pids = GaugeMetricFamily(
            "flamed_target_pids",
            "Processes the sampler is attached to (the target's pids, a unit's cgroup); "
            "0 for a whole-machine target, which perf samples by CPU",
            labels=["target"],
        )
        stacks = GaugeMetricFamily(
            "flamed_window_stacks",
            "Stack entries the target's window holds in memory (summed over its buckets)",
            labels=["target"],
        )
        restarts = CounterMetricFamily(
            "flamed_collector_restarts", "Sampler restarts", labels=["target", "reason"]
        )
        dropped = CounterMetricFamily(
            "flamed_chunks_dropped", "Chunks of samples lost", labels=["target", "reason"]
        )
        lost = CounterMetricFamily(
            "flamed_samples_lost",
            "Samples the profiler lost before flamed read them (perf's ring buffer was full)",
            labels=["target"],
        )
        late = CounterMetricFamily(
            "flamed_samples_late",
            "Samples read after their bucket was stored (added to that bucket afterwards)",
            labels=["target"],
        )
        fixed = CounterMetricFamily(
            "flamed_perf_records_fixed",
            "KSYMBOL records flamed mended on their way to perf script, which could not read "
            "them (truncated: cut to their true size; dropped: past mending)",
            labels=["target", "fix"],
        )
        offcpu = GaugeMetricFamily(
            "flamed_offcpu_up",
            "1 if the target's off-CPU sampler (bpftrace) runs; only targets with offcpu = true",
            labels=["target"],
        )
        maps = JitMapFamilies()
        for reading in self.read():
            for kind, stats in reading.jit_maps.items():
                maps.add(reading.target, kind, stats)
            up.add_metric([reading.target], 1.0 if reading.up else 0.0)
            if reading.offcpu_up is not None:
                offcpu.add_metric([reading.target], 1.0 if reading.offcpu_up else 0.0)
            pids.add_metric([reading.target], reading.pids)
            stacks.add_metric([reading.target], reading.stacks)
            add_by_reason(restarts, reading.target, reading.restarts, RESTART_REASONS)
            add_by_reason(
                dropped, reading.target, reading.dropped, (*DROP_REASONS, *DAEMON_DROP_REASONS)
            )
            lost.add_metric([reading.target], reading.samples_lost)
            late.add_metric([reading.target], reading.samples_late)
            add_by_reason(fixed, reading.target, reading.records_fixed, RECORD_FIXES)
        yield from (up, pids, stacks, restarts, dropped, lost, late, fixed, offcpu)
        yield from maps.families()

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """Every metric the daemon exports, registered in ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        version: str = "unknown",
        process: bool = True,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.input_bytes = Counter(
            "flamed_collapse_input_bytes_total",
            "Bytes of profiler text folded",
            ["target", "format"],
            registry=reg,
        )
        self.samples = Counter(
            "flamed_collapse_samples_total", "Samples folded", ["target"], registry=reg
        )
        self.offcpu_seconds = Counter(
            "flamed_offcpu_seconds_total",
            "Seconds the target's threads spent off CPU (in blocks at least the minimum long)",
            ["target"],
            registry=reg,
        )
        self.collapse_seconds = Counter(
            "flamed_collapse_seconds_total",
            "CPU seconds spent folding (rate(bytes)/rate(seconds) is the throughput)",
            ["target", "format"],
            registry=reg,
        )
        self.render_seconds = Histogram(
            "flamed_render_seconds", "Time to render a graph", buckets=RENDER_BUCKETS, registry=reg
        )
        self.http_duration = Histogram(
            "flamed_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "code"],
            buckets=HTTP_BUCKETS,
            registry=reg,
        )
        self.config_reloads = Counter(
            "flamed_config_reloads_total", "Configuration reloads", ["result"], registry=reg
        )
        for result in ("success", "error"):  # both exist from the start: increase() sees the first
            self.config_reloads.labels(result)
        self.disk_errors = Counter(
            "flamed_disk_errors_total",
            "Bucket file operations that failed (the buckets stay in memory and are written later)",
            ["op", "reason"],
            registry=reg,
        )
        build = Gauge("flamed_build_info", "flamed's version", ["version"], registry=reg)
        build.labels(version).set(1)
        self.targets = TargetCollector()
        reg.register(self.targets)
        if process:
            ProcessCollector(registry=reg)

    def add_targets(self, read: Callable[[], Iterable[TargetReading]]) -> None:
        """Report the targets ``read`` returns at every scrape (the service's)."""
        self.targets.read = read

    def chunk_folded(
        self, target: str, fmt: str, nbytes: int, samples: int, cpu: float, profile: str = "cpu"
    ) -> None:
        """A chunk came; an ``offcpu`` one's ``samples`` are microseconds off CPU."""
        self.input_bytes.labels(target, fmt).inc(nbytes)
        if profile == "offcpu":
            self.offcpu_seconds.labels(target).inc(samples / 1e6)
        else:
            self.samples.labels(target).inc(samples)
        self.collapse_seconds.labels(target, fmt).inc(max(cpu, 0.0))


class ExportMetrics:
    """The exporters' metrics (flamed.daemon.export), registered once on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pushes = Counter(
            "flamed_export_pushes_total",
            "Push attempts to profile receivers, by result (success, retry, rejected)",
            ["exporter", "result"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "flamed_export_queue_depth",
            "Buckets waiting to be pushed",
            ["exporter"],
            registry=registry,
        )
        self.dropped = Counter(
            "flamed_export_dropped_total",
            "Buckets never pushed, by reason (queue_full, too_old, rejected, shutdown)",
            ["exporter", "reason"],
            registry=registry,
        )

    def add(self, name: str) -> None:
        """Make every series of an exporter exist at zero."""
        for result in PUSH_RESULTS:
            self.pushes.labels(name, result)
        for reason in PUSH_DROP_REASONS:
            self.dropped.labels(name, reason)
        self.queue_depth.labels(name).set(0)

    def remove(self, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.queue_depth.remove(name)
