"""Benchmark (issue 21): perf's ring buffer and perf script's buffering against latency and cost.

Runs the daemon's pipeline by itself (``perf record -k CLOCK_MONOTONIC -o - |
perf script -i -``, the daemon's options) on the whole machine, with the mixed
workload of ``bench_overhead.py``, once per variant, and prints for each:

* latency: when each sample reached this reader, minus its own time stamp
  (median, p95, p99, max), over the steady part of the run;
* CPU of perf record and of perf script over the same part (% of one core,
  from /proc: CPU time, not wall time);
* samples perf reported lost, and perf script's RSS at the end.

    python tests/bench/bench_pipeline.py [--frequency 99] [--seconds 60] [--warm 15]
        [--variants default,m8,m64,nobuf,m8+linebuf,m8+ping,m8+ping+timer] [--rounds 1]
        [--target all|burner]

Variants: ``default`` is perf's own ring (512 KiB per CPU as root), ``mN`` is
``-m N`` pages, ``nobuf`` is ``--no-buffering`` (a wake-up per sample),
``+linebuf`` runs perf script under ``stdbuf -oL`` (its stdout flushed per line
instead of per 4 KiB), ``+ping`` writes ``ping`` to perf record's command pipe
(``--control``) every second, as the daemon does, so perf writes what its rings
hold; ``+timer`` reads perf script's output every ``READ_EVERY`` seconds (all the
pipe holds), as the daemon does, instead of as soon as it is readable.
``--target burner`` samples the C burner alone (``-p``) instead of the whole
machine. Rounds alternate the variants. Needs root for ``-a``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flamed.collector.perf import SCRIPT_FIELDS, detect_event  # noqa: E402
from flamed.collector.pipeline import READ_EVERY  # noqa: E402
from flamed.collector.procfs import cpu_seconds, resident_bytes  # noqa: E402
from tests.bench.workload import Workload  # noqa: E402

PROC = Path("/proc")
HEAD = re.compile(rb"^\S[^\n]* \d+/\d+ +(\d+\.\d+): ", re.MULTILINE)
LOST = re.compile(rb"PERF_RECORD_LOST lost (\d+)")


def argvs(variant: str, args: argparse.Namespace, event: str) -> tuple[list[str], list[str]]:
    record = ["perf", "record", "-k", "CLOCK_MONOTONIC", "-F", str(args.frequency), "-e", event]
    record += ["--call-graph", "fp", "--no-buildid-cache", "--no-bpf-event", "-o", "-"]
    record += ["-p", str(args.pid)] if args.pid else ["-a"]
    script = ["perf", "script", "-i", "-", "--no-inline", "--show-lost-events", "-F", SCRIPT_FIELDS]
    for part in variant.split("+"):
        if part.startswith("m") and part[1:].isdigit():
            record += ["-m", part[1:]]
        elif part == "nobuf":
            record += ["--no-buffering"]
        elif part == "linebuf":
            script = ["stdbuf", "-oL", *script]
    return record, script


def run(variant: str, args: argparse.Namespace, event: str) -> dict[str, float]:
    record_argv, script_argv = argvs(variant, args, event)
    theirs, ours = os.pipe()
    if "ping" in variant.split("+"):
        record_argv += ["--control", f"fd:{theirs}"]
    record = subprocess.Popen(
        record_argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, pass_fds=(theirs,)
    )
    os.close(theirs)
    script = subprocess.Popen(
        script_argv, stdin=record.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert record.stdout is not None and script.stdout is not None
    record.stdout.close()
    fd = script.stdout.fileno()
    timer = "timer" in variant.split("+")
    os.set_blocking(fd, not timer)
    began = time.monotonic()
    first: tuple[float, float, float] | None = None
    late: list[float] = []
    lost = 0
    pinged = began
    while time.monotonic() < began + args.warm + args.seconds:
        if "ping" in variant.split("+") and time.monotonic() >= pinged + 1.0:
            os.write(ours, b"ping\n")
            pinged = time.monotonic()
        if first is None and time.monotonic() >= began + args.warm:
            first = (time.monotonic(), cpu_seconds(PROC, record.pid), cpu_seconds(PROC, script.pid))
        data, now = read(fd, timer), time.monotonic()
        if first is not None:
            late += [now - float(found) for found in HEAD.findall(data) if float(found) > first[0]]
        lost += sum(int(count) for count in LOST.findall(data))
    assert first is not None
    elapsed = time.monotonic() - first[0]
    result = {
        "record %": 100 * (cpu_seconds(PROC, record.pid) - first[1]) / elapsed,
        "script %": 100 * (cpu_seconds(PROC, script.pid) - first[2]) / elapsed,
        "script MiB": resident_bytes(PROC, script.pid) / (1 << 20),
        "lost": float(lost),
    }
    record.send_signal(signal.SIGINT)
    os.set_blocking(fd, True)
    while os.read(fd, 1 << 16):
        pass
    record.wait()
    script.wait()
    os.close(ours)
    late.sort()
    for name, share in (("median s", 0.5), ("p95 s", 0.95), ("p99 s", 0.99), ("max s", 1.0)):
        result[name] = late[min(len(late) - 1, int(len(late) * share))] if late else float("nan")
    result["samples"] = float(len(late))
    return result


def read(fd: int, timer: bool) -> bytes:
    """As soon as something is there (0.2 s at most), or, on a timer, all there is."""
    if not timer:
        return os.read(fd, 1 << 16) if select.select([fd], [], [], 0.2)[0] else b""
    time.sleep(READ_EVERY)
    parts = []
    with contextlib.suppress(BlockingIOError):
        while part := os.read(fd, 1 << 16):
            parts.append(part)
    return b"".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frequency", type=int, default=99)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warm", type=float, default=15.0)
    parser.add_argument(
        "--variants", default="default,m8,m64,nobuf,m8+linebuf,m8+ping,m8+ping+timer"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workload", choices=("mixed", "burn"), default="mixed")
    parser.add_argument("--target", choices=("all", "burner"), default="all")
    args = parser.parse_args()
    event = asyncio.run(detect_event("perf"))
    variants = args.variants.split(",")
    results: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory(prefix="flamed-pipeline-") as tmp:
        workload = Workload(Path(tmp), args.workload)
        args.pid = workload.burner_pid if args.target == "burner" else None
        try:
            for _ in range(args.rounds):
                for variant in variants:
                    results[variant].append(run(variant, args, event))
                    print(f"  {variant}: {format_row(results[variant][-1])}", flush=True)
        finally:
            workload.stop()
    print(f"medians over {args.rounds} round(s), {args.frequency} Hz, event {event}:")
    for variant, rows in results.items():
        keys = rows[0].keys()
        print(
            f"  {variant}: {format_row({k: statistics.median(r[k] for r in rows) for k in keys})}"
        )


def format_row(row: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.2f}" for key, value in row.items())


if __name__ == "__main__":
    main()
