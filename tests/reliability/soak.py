"""Soak: a `process` target while ~100 matching short-lived processes start every second.

Runs `flamed run` (real perf, 1 s buckets, 30 s retention so the window reaches
its steady size early) against a C spawner, samples the daemon's RSS, open
fds, threads and /metrics series every few seconds, and prints the figures:

    python tests/reliability/soak.py --minutes 60

The CI form (tests/reliability/test_faults_soak.py) runs it for 2.5 minutes:
CI time is limited, so it is shorter than the issue's 10 minutes; run this
script for the long form.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability.faults_support import (
    Daemon,
    free_port,
    get,
    metric,
    open_fds,
    poll,
    series,
    status_value,
    write_config,
)

SPAWNER_C = textwrap.dedent(
    """
    #include <signal.h>
    #include <stdlib.h>
    #include <string.h>
    #include <time.h>
    #include <unistd.h>
    volatile unsigned long sink;
    static double now(void) {
        struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec + t.tv_nsec / 1e9;
    }
    int main(int argc, char **argv) {
        if (argc > 3 && strcmp(argv[1], "spawn") == 0) {
            /* spawn CHILD SECONDS RATE: start RATE children a second for SECONDS. */
            double end = now() + atof(argv[3]);
            long gap = 1000000L / (argc > 4 ? atol(argv[4]) : 100);
            signal(SIGCHLD, SIG_IGN);  /* children are reaped by the kernel */
            while (now() < end) {
                if (fork() == 0) { execl(argv[2], argv[2], (char *)0); _exit(127); }
                usleep(gap);
            }
            return 0;
        }
        /* A child: sleep 1 s, burn CPU for 50 ms, exit (about 100 alive at a time). */
        usleep(1000000);
        double end = now() + 0.05;
        while (now() < end) for (int i = 0; i < 10000; i++) sink += i;
        return 0;
    }
    """
)


@dataclass
class Sample:
    at: float
    rss_kb: int
    fds: int
    threads: int
    series: int
    scrape_seconds: float


@dataclass
class Report:
    minutes: float
    samples: list[Sample] = field(default_factory=list)
    spawned_per_second: float = 0.0
    restarts: dict[str, float] = field(default_factory=dict)
    samples_folded: float = 0.0
    pid_labels: int = 0
    series_added: list[str] = field(default_factory=list)

    def steady(self) -> list[Sample]:
        """Samples after the window filled (the first 40%, at least 40 s, are warm-up)."""
        start = self.samples[0].at + max(40.0, 0.4 * (self.samples[-1].at - self.samples[0].at))
        return [s for s in self.samples if s.at >= start]

    def mb_per_hour(self) -> float:
        """Least-squares slope of RSS over the steady samples."""
        steady = self.steady()
        xs = [s.at for s in steady]
        ys = [s.rss_kb / 1024 for s in steady]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mean_x) ** 2 for x in xs) or 1.0
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / den
        return slope * 3600

    def figures(self) -> dict[str, object]:
        steady = self.steady()
        return {
            "minutes": self.minutes,
            "processes started per second": round(self.spawned_per_second, 1),
            "RSS MB (steady first, last)": (
                round(steady[0].rss_kb / 1024, 1),
                round(steady[-1].rss_kb / 1024, 1),
            ),
            "RSS MB per hour (steady slope)": round(self.mb_per_hour(), 1),
            "open fds (steady min, max)": (min(s.fds for s in steady), max(s.fds for s in steady)),
            "threads (steady min, max)": (
                min(s.threads for s in steady),
                max(s.threads for s in steady),
            ),
            "metric series (steady min, max)": (
                min(s.series for s in steady),
                max(s.series for s in steady),
            ),
            "series added after warm-up": len(self.series_added),
            "slowest scrape s (targets + metrics)": round(
                max(s.scrape_seconds for s in self.samples), 3
            ),
            "label values equal to a pid": self.pid_labels,
            "restarts by reason": self.restarts,
            "samples folded": self.samples_folded,
        }


def build(folder: Path) -> tuple[Path, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is not installed")
    (folder / "soak.c").write_text(SPAWNER_C)
    child = folder / "fsoakchild"
    subprocess.run([gcc, "-O0", "-o", str(child), str(folder / "soak.c")], check=True)
    spawner = folder / "fsoakspawner"
    shutil.copy(child, spawner)
    return spawner, child


def scrape(daemon: Daemon) -> set[str]:
    """/api/v1/targets and /metrics (the same routes every time: their series are fixed)."""
    for path in ("/api/v1/targets", "/metrics"):
        status, body = get(daemon.base + path, timeout=120)
        assert status == 200, body
    return series(body.decode())


def pid_label_values(found: set[str]) -> int:
    """Label values that are numbers a pid could be (no label may carry pids)."""
    import re

    count = 0
    for line in found:
        for _key, value in re.findall(r'(\w+)="([^"]*)"', line):
            if value.isdigit() and int(value) > 300 and _key != "le":
                count += 1
    return count


def soak(minutes: float, folder: Path, rate: int = 100, every: float = 5.0) -> Report:
    spawner, child = build(folder)
    port, state, config = free_port(), folder / "state", folder / "flamed.toml"
    write_config(
        config,
        port,
        state,
        extra='rollup_after = "30s"\nrollup = "10s"\n',
        process=child.name,
    )
    config.write_text(config.read_text().replace('retention = "1h"', 'retention = "30s"'))
    seconds = minutes * 60
    spawn = subprocess.Popen([str(spawner), "spawn", str(child), str(seconds + 30), str(rate)])
    daemon = Daemon(config, port, folder)
    report = Report(minutes)
    try:
        daemon.ready()
        poll(lambda: daemon.target()["state"] in ("running", "error"), "the target", 60)
        started = time.monotonic()
        baseline: set[str] | None = None
        while time.monotonic() - started < seconds:
            asked = time.monotonic()
            found = scrape(daemon)
            at = time.monotonic() - started
            report.samples.append(
                Sample(
                    at,
                    status_value(daemon.pid, "VmRSS"),
                    open_fds(daemon.pid),
                    status_value(daemon.pid, "Threads"),
                    len(found),
                    time.monotonic() - asked,
                )
            )
            report.pid_labels = max(report.pid_labels, pid_label_values(found))
            if baseline is None and at >= max(40.0, 0.4 * seconds):
                baseline = found
            elif baseline is not None:
                report.series_added = sorted(found - baseline)
            time.sleep(every)
        assert daemon.proc.poll() is None, "the daemon died"
        text = daemon.metrics()
        report.restarts = restarts_by_reason(text)
        report.samples_folded = metric(text, "flamed_collapse_samples_total", target="burn")
        report.spawned_per_second = rate
        daemon.stop()
    finally:
        spawn.kill()
        spawn.wait()
        daemon.kill()
    return report


def restarts_by_reason(text: str) -> dict[str, float]:
    import re

    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("flamed_collector_restarts_total{"):
            reason = re.search(r'reason="([^"]*)"', line)
            if reason:
                found[reason.group(1)] = float(line.rsplit(" ", 1)[1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=100, help="processes started per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flamed-soak-") as tmp:
        report = soak(args.minutes, Path(tmp), args.rate)
    print(json.dumps(report.figures(), indent=2))
    print(json.dumps([asdict(s) for s in report.samples]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
