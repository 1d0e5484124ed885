"""Benchmark (issue 17): what naming JIT frames costs.

* ``maps``: a real process's 100k-line perf map in this machine's /tmp, read by
  ``flamed.collector.perfmap.PerfMaps`` as a perf session reads it: the first
  read (a new process), then one bucket (10 s) of steady state: a look every
  second (unchanged file) and a lookup per distinct frame line of the bucket
  (``--frames``, a new collapser each bucket asks each once), then one bucket
  in which the map grew by ``--grow`` lines. CPU time (``time.process_time``),
  median of ``--rounds`` alternating rounds.
* ``py-spy``: the py-spy backend on tests/data/python/hot.py for ``--seconds``:
  py-spy's CPU (from /proc, what the session reports as tool CPU) and this
  process's (the session: reading, folding, its event loop), as % of one core.

    python tests/bench/bench_jit.py [maps|py-spy|all] [--rounds 5] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flamed.collector.perfmap import PerfMaps  # noqa: E402

LINES = 100_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def map_text(lines: int, first: int = 0) -> bytes:
    return b"".join(
        b"%x %x LazyCompile:*function_%d /srv/app/module_%d.js:%d\n"
        % (0x7F0000000000 + i * 0x100, 0xC0, i, i % 97, i % 1000)
        for i in range(first, first + lines)
    )


def cpu(work: object) -> float:
    started = time.process_time()
    work()  # type: ignore[operator]
    return time.process_time() - started


def maps_round(pid: int, path: Path, frames: int, grow: int) -> tuple[float, float, float]:
    path.write_bytes(map_text(LINES))
    clock = Clock()
    maps = PerfMaps(clock=clock)
    addresses = [0x7F0000000000 + (i * 7919 % LINES) * 0x100 + 8 for i in range(frames)]

    def first() -> None:
        assert maps.lookup(pid, addresses[0]) is not None

    def bucket() -> None:
        for second in range(10):
            clock.now += 1.0
            for address in addresses[second::10]:
                maps.lookup(pid, address)

    read = cpu(first)
    steady = cpu(bucket)
    with path.open("ab") as extra:
        extra.write(map_text(grow, LINES))
    grown = cpu(bucket)
    assert maps.lookup(pid, 0x7F0000000000 + (LINES + grow - 1) * 0x100) is not None
    return read, steady, grown


def bench_maps(rounds: int, frames: int, grow: int) -> None:
    child = subprocess.Popen(["sleep", "600"])
    path = Path(f"/tmp/perf-{child.pid}.map")
    results = []
    try:
        for _ in range(rounds):
            results.append(maps_round(child.pid, path, frames, grow))
    finally:
        child.kill()
        child.wait()
        path.unlink(missing_ok=True)
    size = len(map_text(LINES)) / 1e6
    print(f"perf map: {LINES} lines ({size:.1f} MB), {frames} distinct frames a bucket")
    for index, what in enumerate(("first read", "a bucket, unchanged", f"a bucket, +{grow}")):
        values = sorted(result[index] * 1000 for result in results)
        print(f"  {what:24} {statistics.median(values):8.2f} ms CPU (min {values[0]:.2f})")


async def pyspy_run(seconds: float) -> tuple[float, float, int]:
    from flamed.collector import Chunk, TargetSpec, create_session

    hot = ROOT / "tests" / "data" / "python" / "hot.py"
    target = subprocess.Popen([sys.executable, str(hot), str(int(seconds) + 30), "benchjit"])
    chunks: list[Chunk] = []
    spec = TargetSpec("py", pids=(target.pid,), backend="py-spy", frequency=99)
    session = create_session(spec, bucket_seconds=10, on_chunk=chunks.append)
    task = asyncio.create_task(session.run())
    started = time.process_time()
    try:
        await asyncio.sleep(seconds)
    finally:
        await session.stop()
        await task
        target.kill()
        target.wait()
    ours = time.process_time() - started  # the session's reading and folding, all of it
    return getattr(session, "tool_cpu_seconds", 0.0), ours, sum(c.samples for c in chunks)


def bench_pyspy(seconds: float) -> None:
    tool, ours, samples = asyncio.run(pyspy_run(seconds))
    print(f"py-spy backend, one CPython 3.11 process at 99 Hz for {seconds:g} s:")
    print(f"  py-spy   {100 * tool / seconds:6.2f} % of a core")
    print(f"  flamed   {100 * ours / seconds:6.2f} % of a core ({samples} samples)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=("maps", "py-spy", "all"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--grow", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.what in ("maps", "all"):
        bench_maps(args.rounds, args.frames, args.grow)
    if args.what in ("py-spy", "all"):
        bench_pyspy(args.seconds)


if __name__ == "__main__":
    main()
