"""Benchmark (issue 21): what the always-on daemon costs, next to `perf record` alone.

Every mode starts `flamed run` on the embedded default (the whole machine at
99 Hz, 10 s buckets; only the port and the state folder are changed) against a
workload it makes itself: the C burner, plus (``--workload mixed``, the
default) a shell loop that keeps starting short-lived gzip, sha256sum, perl,
python3, gcc and node processes.

    python tests/bench/bench_overhead.py cpu [--workload mixed|burn] [--short 15] [--long 75]
                                             [--rounds 3]
        Marginal CPU (% of one core) of the daemon with all its children: a long
        run minus a short run, over their difference in seconds; `perf record
        -F 99 -g -a` alone runs beside it in every run and is measured the same
        way. Runs alternate short, long, short, long...; medians are compared.
        CPU time (user + system, from wait4), not wall time: other work on the
        machine slows both, it does not bill either. Also where the daemon's
        CPU goes in the steady part of the long runs (perf record, perf
        script, the collapser, the rest of the daemon's own process).
    python tests/bench/bench_overhead.py coverage [--minutes 5] [--frequency 99]
        The daemon and a standalone `perf record -k CLOCK_MONOTONIC` of the same
        target at the same rate, at the same time; the samples of every bucket
        the daemon stored against the reference's samples stamped in that
        bucket's range; late and lost samples from /api/v1/targets.
    python tests/bench/bench_overhead.py rss [--minutes 60]
        Resident memory of the daemon, perf record and perf script, every 30 s (--every).

Needs perf, gcc and root (or CAP_PERFMON) for whole-machine sampling.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flamed.collector.perf import detect_event  # noqa: E402
from flamed.collector.procfs import cpu_seconds, resident_bytes, stat_fields  # noqa: E402
from tests.bench.workload import Workload  # noqa: E402

PROC = Path("/proc")
TIME = re.compile(rb"^\s*(\d+\.\d+):?\s*$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def default_config(state: Path, port: int, frequency: int) -> str:
    """The embedded default, with only the port, the state folder and the rate changed."""
    text = resources.files("flamed.daemon").joinpath("default.toml").read_text()
    text = text.replace('listen = "127.0.0.1:9797"', f'listen = "127.0.0.1:{port}"')
    text = text.replace("[storage]\n", f"[storage]\nstate_dir = {str(state)!r}\n")
    return text.replace("frequency = 99", f"frequency = {frequency}")


class Daemon:
    """`flamed run` as a child of this process (so wait4 gives its CPU and its children's)."""

    def __init__(self, folder: Path, frequency: int = 99, python: str = sys.executable) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.state = folder / "state"
        self.base = f"http://127.0.0.1:{free_port()}"
        config = folder / "flamed.toml"
        config.write_text(default_config(self.state, int(self.base.rsplit(":", 1)[1]), frequency))
        self.log = (folder / "daemon.log").open("ab")
        argv = [python, "-m", "flamed.daemon.cli", "run", "--config", str(config)]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            return bytes(response.read())

    def wait_sampling(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if json.loads(self.get("/api/v1/targets"))[0]["state"] == "running":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the daemon did not start sampling; see daemon.log")

    def target(self) -> dict[str, object]:
        return dict(json.loads(self.get("/api/v1/targets"))[0])

    def children(self) -> dict[str, int]:
        """perf record and perf script (the daemon's children), by what they are."""
        found = {}
        for name in os.listdir(PROC):
            fields = stat_fields(PROC, int(name)) if name.isdigit() else []
            if len(fields) > 1 and int(fields[1]) == self.proc.pid:
                args = (PROC / name / "cmdline").read_bytes().split(b"\0")
                if b"record" in args or b"script" in args:
                    found["perf " + ("record" if b"record" in args else "script")] = int(name)
        return found

    def stop(self) -> float:
        """SIGTERM, reap; the CPU seconds of the daemon and every child it reaped."""
        self.proc.send_signal(signal.SIGTERM)
        _pid, _status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        self.log.close()
        return usage.ru_utime + usage.ru_stime


def perf_alone(
    output: Path, event: str, frequency: int = 99, clock: bool = False
) -> subprocess.Popen[bytes]:
    argv = ["perf", "record", "-F", str(frequency), "-e", event, "-g", "-a", "-o", str(output)]
    if clock:
        argv[2:2] = ["-k", "CLOCK_MONOTONIC"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf(proc: subprocess.Popen[bytes]) -> float:
    proc.send_signal(signal.SIGINT)
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def collapse_seconds(daemon: Daemon) -> float:
    """flamed_collapse_seconds_total: the collapser's CPU plus perf script's, as chunks say."""
    total = 0.0
    for line in daemon.get("/metrics").decode().splitlines():
        if line.startswith("flamed_collapse_seconds_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- cpu ------------------------------------------------------------------------------------


def snapshot(daemon: Daemon) -> dict[str, float]:
    """CPU seconds so far of the daemon's own process and each child, and the collapse metric."""
    found = {name: cpu_seconds(PROC, pid) for name, pid in daemon.children().items()}
    found["daemon process"] = cpu_seconds(PROC, daemon.proc.pid)  # its own threads only
    found["collapse metric"] = collapse_seconds(daemon)
    return found


def cpu_run(
    folder: Path, seconds: float, event: str, breakdown: list[dict[str, float]], python: str
) -> tuple[float, float]:
    """One run: the daemon and perf alone side by side for ``seconds``; both CPU times."""
    daemon = Daemon(folder, python=python)
    alone = perf_alone(folder / "alone.data", event)
    try:
        daemon.wait_sampling()
        warm = min(20.0, seconds / 3)
        time.sleep(warm)
        first, started = snapshot(daemon), time.monotonic()
        time.sleep(max(0.0, seconds - warm))
        last, elapsed = snapshot(daemon), time.monotonic() - started
        if seconds > 30:
            rates = {key: (last[key] - first.get(key, 0.0)) / elapsed for key in last}
            breakdown.append(rates)
    finally:
        ours = daemon.stop()
        theirs = stop_perf(alone)
        (folder / "alone.data").unlink(missing_ok=True)
    return ours, theirs


def cpu(args: argparse.Namespace) -> None:
    event = asyncio.run(detect_event("perf"))
    print(f"workload {args.workload}; event {event}; short {args.short} s, long {args.long} s")
    with tempfile.TemporaryDirectory(prefix="flamed-overhead-") as tmp:
        workload = Workload(Path(tmp), args.workload)
        runs: dict[str, list[tuple[float, float]]] = {"short": [], "long": []}
        breakdown: list[dict[str, float]] = []
        try:
            for index in range(args.rounds):
                for kind, seconds in (("short", args.short), ("long", args.long)):
                    folder = Path(tmp) / f"{kind}{index}"
                    runs[kind].append(cpu_run(folder, seconds, event, breakdown, args.python))
                    ours, theirs = runs[kind][-1]
                    print(f"  {kind} run {index + 1}: daemon+children {ours:.2f} s CPU, ", end="")
                    print(f"perf alone {theirs:.2f} s", flush=True)
        finally:
            workload.stop()
    report_cpu(runs, args.long - args.short, breakdown)


def report_cpu(
    runs: dict[str, list[tuple[float, float]]], span: float, breakdown: list[dict[str, float]]
) -> None:
    def marginal(which: int) -> float:
        long = statistics.median(run[which] for run in runs["long"])
        short = statistics.median(run[which] for run in runs["short"])
        return 100 * (long - short) / span

    ours, theirs = marginal(0), marginal(1)
    print(f"daemon + children, marginal: {ours:.2f} % of one core")
    print(f"perf record alone, marginal: {theirs:.2f} % of one core")
    print(f"ratio: {ours / theirs:.1f}x" if theirs > 0 else "ratio: perf alone used no CPU")
    if breakdown:
        keys = sorted({key for rates in breakdown for key in rates})
        median = {
            key: statistics.median(rates.get(key, 0.0) for rates in breakdown) for key in keys
        }
        script = median.get("perf script", 0.0)
        collapser = max(0.0, median.get("collapse metric", 0.0) - script)
        rest = median.get("daemon process", 0.0) - collapser
        print("steady state of the long runs (median), % of one core:")
        for name in ("perf record", "perf script"):
            print(f"  {name}: {100 * median.get(name, 0.0):.2f}")
        print(f"  the daemon's own process: {100 * median.get('daemon process', 0.0):.2f}, of it")
        print(f"  the collapser (cutting and folding the stream): {100 * collapser:.2f}")
        print(f"  the rest of the daemon's process (event loop, HTTP, disk): {100 * rest:.2f}")


# -- coverage -------------------------------------------------------------------------------


def reference_times(data: Path) -> list[float]:
    out = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "time"], capture_output=True, check=True
    ).stdout
    return [float(found) for found in TIME.findall(out)]


def stored_buckets(state: Path) -> list[tuple[float, float, int]]:
    buckets = []
    for path in sorted((state / "system").glob("*.folded.gz")):
        start, end = (int(part) / 1000 for part in path.name.split(".")[0].split("-"))
        with gzip.open(path, "rb") as stream:
            found = re.search(rb"samples=(\d+)", stream.readline(200))
        buckets.append((start, end, int(found.group(1)) if found else 0))
    return buckets


def coverage(args: argparse.Namespace) -> None:
    event = asyncio.run(detect_event("perf"))
    with tempfile.TemporaryDirectory(prefix="flamed-coverage-") as tmp:
        folder = Path(tmp)
        workload = Workload(folder, args.workload)
        try:
            daemon = Daemon(folder / "daemon", args.frequency)
            daemon.wait_sampling()
            offset = time.time() - time.monotonic()
            alone = perf_alone(folder / "ref.data", event, args.frequency, clock=True)
            time.sleep(args.minutes * 60)
            stop_perf(alone)
            time.sleep(15)  # the daemon's last complete bucket is stored
            target = daemon.target()
            daemon.stop()
        finally:
            workload.stop()
        times = [stamp + offset for stamp in reference_times(folder / "ref.data")]
        report_coverage(stored_buckets(daemon.state), times, target, args.frequency)


def report_coverage(
    buckets: list[tuple[float, float, int]],
    times: list[float],
    target: dict[str, object],
    frequency: int,
) -> None:
    first, last = min(times), max(times)
    inside = [(s, e, n) for s, e, n in buckets if s >= first and e <= last]
    ratios = []
    ours = theirs = 0
    for start, end, samples in inside:
        reference = sum(1 for stamp in times if start <= stamp < end)
        ours, theirs = ours + samples, theirs + reference
        ratios.append(samples / reference if reference else 1.0)
    print(
        f"{len(inside)} complete buckets at {frequency} Hz: the daemon holds {ours} samples, "
        f"perf record alone {theirs}: {100 * ours / max(theirs, 1):.2f} %"
    )
    if ratios:
        low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
        print(
            f"per bucket: min {100 * low:.1f} %, median {100 * mid:.1f} %, max {100 * high:.1f} %"
        )
    print(
        f"late samples (added to their bucket afterwards): {target.get('samples_late')}; "
        f"lost: {target.get('samples_lost')}; restarts: {target.get('restarts')}"
    )


# -- rss ------------------------------------------------------------------------------------


def rss(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="flamed-rss-") as tmp:
        workload = Workload(Path(tmp), args.workload)
        try:
            daemon = Daemon(Path(tmp) / "daemon")
            daemon.wait_sampling()
            started = time.monotonic()
            peaks: dict[str, int] = {}
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                pids = {"daemon": daemon.proc.pid, **daemon.children()}
                now = {name: resident_bytes(PROC, pid) >> 20 for name, pid in pids.items()}
                for name, mib in now.items():
                    peaks[name] = max(peaks.get(name, 0), mib)
                target = daemon.target()
                print(
                    f"{elapsed / 60:6.1f} min  RSS MiB {now}  restarts {target['restarts']} "
                    f"late {target['samples_late']} lost {target['samples_lost']}",
                    flush=True,
                )
                time.sleep(args.every)
            print(f"peak RSS MiB over {args.minutes} min: {peaks}")
            daemon.stop()
        finally:
            workload.stop()


def main() -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))  # cleanup runs on kill
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("cpu", "coverage", "rss"))
    parser.add_argument("--workload", choices=("mixed", "burn"), default="mixed")
    parser.add_argument("--short", type=float, default=15.0)
    parser.add_argument("--long", type=float, default=75.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--frequency", type=int, default=99)
    parser.add_argument("--every", type=float, default=30.0, help="rss: seconds between looks")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="cpu: the interpreter whose flamed runs the daemon (another checkout's venv)",
    )
    args = parser.parse_args()
    if args.minutes is None:
        args.minutes = 60.0 if args.mode == "rss" else 5.0
    {"cpu": cpu, "coverage": coverage, "rss": rss}[args.mode](args)


if __name__ == "__main__":
    main()
