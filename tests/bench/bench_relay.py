"""Benchmark (issue 21): what relaying perf record's stream through flamed costs.

The daemon's pipeline (``collector.pipeline.start_pipeline``, the daemon's perf
options, pinged every second) on the whole machine with the mixed workload of
``bench_overhead.py``, alternately without (``direct``: perf record's stdout is
perf script's stdin) and with the relay that mends KSYMBOL records
(``relay``). For each run, over its steady part, prints the CPU of this process
(the relay, reading perf script's output, the event loop; % of one core, CPU
time), the part of it spent mending (``StreamMender.feed``), perf script's CPU,
the bytes relayed and the relay's reads per second, and how late samples reached
this process (median, p99, from their own time stamps); then the medians per variant.

    python tests/bench/bench_relay.py [--seconds 60] [--warm 10] [--rounds 3]
        [--frequency 99] [--workload mixed|burn] [--variants direct,relay]

Needs root (``-a``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flamed.collector.perf import RING_PAGES, detect_event, script_argv  # noqa: E402
from flamed.collector.perfstream import StreamMender  # noqa: E402
from flamed.collector.pipeline import start_pipeline  # noqa: E402
from flamed.collector.procfs import cpu_seconds  # noqa: E402
from tests.bench.workload import Workload  # noqa: E402

PROC = Path("/proc")
HEAD = re.compile(rb"^\S[^\n]* \d+/\d+ +(\d+\.\d+): ", re.MULTILINE)


class TimedMender(StreamMender):
    """A mender that adds up its own CPU time, bytes and calls."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu = 0.0
        self.bytes = 0
        self.calls = 0

    def feed(self, data: bytes) -> bytes:
        began = time.process_time()
        out = super().feed(data)
        self.cpu += time.process_time() - began
        self.bytes += len(data)
        self.calls += 1
        return out


async def run(variant: str, args: argparse.Namespace, event: str) -> dict[str, float]:
    record = ["perf", "record", "-F", str(args.frequency), "-e", event, "--call-graph", "fp"]
    record += ["-k", "CLOCK_MONOTONIC", "-o", "-", "--no-buildid-cache", "--no-bpf-event"]
    record += ["-m", str(RING_PAGES), "-a"]
    mender = TimedMender() if variant == "relay" else None
    late: list[float] = []
    measuring = [False]

    def sink(data: bytes) -> None:
        if measuring[0]:
            now = time.monotonic()
            late.extend(now - float(stamp) for stamp in HEAD.findall(data))

    pipeline = await start_pipeline(
        record,
        script_argv("perf"),
        sink,
        name=variant,
        control=True,
        mender=mender,
    )
    began = time.monotonic()
    while time.monotonic() < began + args.warm:
        pipeline.ping()
        await asyncio.sleep(1.0)
    start = (time.monotonic(), time.process_time(), cpu_seconds(PROC, pipeline.script.pid))
    mended = (mender.cpu, mender.bytes, mender.calls) if mender else (0.0, 0, 0)
    measuring[0] = True
    while time.monotonic() < start[0] + args.seconds:
        pipeline.ping()
        await asyncio.sleep(1.0)
    elapsed = time.monotonic() - start[0]
    result = {
        "flamed %": 100 * (time.process_time() - start[1]) / elapsed,
        "script %": 100 * (cpu_seconds(PROC, pipeline.script.pid) - start[2]) / elapsed,
    }
    late.sort()
    result["latency median s"] = late[len(late) // 2] if late else float("nan")
    result["latency p99 s"] = late[int(len(late) * 0.99)] if late else float("nan")
    if mender is not None:
        result["mending %"] = 100 * (mender.cpu - mended[0]) / elapsed
        result["KiB/s"] = (mender.bytes - mended[1]) / elapsed / 1024
        result["reads/s"] = (mender.calls - mended[2]) / elapsed
    await pipeline.stop(10.0)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warm", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frequency", type=int, default=99)
    parser.add_argument("--workload", choices=("mixed", "burn"), default="mixed")
    parser.add_argument("--variants", default="direct,relay")
    args = parser.parse_args()
    event = await detect_event("perf")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in args.variants.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        workload = Workload(Path(tmp), args.workload)
        try:
            for index in range(args.rounds):
                for variant in results:
                    result = await run(variant, args, event)
                    results[variant].append(result)
                    shown = ", ".join(f"{k} {v:.3f}" for k, v in result.items())
                    print(f"round {index + 1} {variant}: {shown}", flush=True)
        finally:
            workload.stop()
    for variant, runs in results.items():
        medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"median {variant}: " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))


if __name__ == "__main__":
    asyncio.run(main())
