"""Benchmark: the perf session's own CPU (this Python process) against `perf script`'s.

Runs a real perf session on the whole machine (with the two-function test
program burning CPU, so there are stacks to fold) and prints:

* the CPU time of this process over the run (``time.process_time``: the event
  loop, stderr parsing, the collapser, everything), and the part spent inside
  the collapser (summed per chunk);
* the CPU time of the long-lived ``perf script`` over the same chunks (/proc);
* their ratio. (With a ``perf script`` per bucket file the ratio had to stay
  under 1/4; one long-lived ``perf script`` costs about a tenth of that, so
  the collapser is now the larger share: ``bench_overhead.py`` measures the
  whole.)

    python tests/bench/bench_collector.py [--seconds 20] [--frequency 499] [--bucket 2]

Needs perf and permission to sample the whole machine (root).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flamed.collector import Chunk, TargetSpec, create_session  # noqa: E402
from flamed.collector.perf import PerfSession  # noqa: E402
from tests.collector.helpers import BURN_C  # noqa: E402


def build(folder: Path) -> Path:
    (folder / "burn.c").write_text(BURN_C)
    binary = folder / "flamedburn"
    subprocess.run(
        ["gcc", "-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(folder / "burn.c")],
        check=True,
    )
    return binary


async def measure(args: argparse.Namespace, folder: Path) -> int:
    chunks: list[Chunk] = []
    spec = TargetSpec("bench", all=True, frequency=args.frequency)
    session = create_session(spec, bucket_seconds=args.bucket, on_chunk=chunks.append)
    assert isinstance(session, PerfSession)
    burn = subprocess.Popen([str(build(folder)), str(int(args.seconds) + 30)])
    try:
        cpu_before = time.process_time()
        wall_before = time.monotonic()
        task = asyncio.create_task(session.run())
        await asyncio.sleep(args.seconds)
        await session.stop()
        await task
        wall = time.monotonic() - wall_before
        own = time.process_time() - cpu_before
    finally:
        burn.kill()
        burn.wait()
    return report(session, chunks, own, wall)


def report(session: PerfSession, chunks: list[Chunk], own: float, wall: float) -> int:
    script = session.tool_cpu_seconds
    samples = sum(chunk.samples for chunk in chunks)
    megabytes = sum(chunk.bytes_folded for chunk in chunks) / 1e6
    print(f"event: {session.status.event}; {len(chunks)} chunks in {wall:.1f} s wall")
    print(f"samples folded: {samples}; perf script output: {megabytes:.1f} MB")
    print(f"lost: {session.status.samples_lost}; late: {session.status.samples_late}")
    print(f"perf script CPU (/proc, per chunk): {script:8.3f} s")
    print(f"Python process CPU (whole session): {own:8.3f} s")
    print(f"  of which in the collapser:        {session.python_cpu_seconds:8.3f} s")
    if script <= 0:
        print("no perf script CPU measured")
        return 1
    print(f"ratio Python / perf script:         {own / script:8.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--frequency", type=int, default=499)
    parser.add_argument("--bucket", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flamed-bench-") as folder:
        return asyncio.run(measure(args, Path(folder)))


if __name__ == "__main__":
    sys.exit(main())
