"""Benchmark the pprof encoder (what every push and /api/v1/pprof costs).

    python tests/bench/bench_pprof.py [--stacks 50000] [--depth 30] [--runs 5] [FILE.folded...]

Without files it makes a synthetic bucket: ``--stacks`` distinct stacks of
about ``--depth`` frames drawn from a vocabulary of 5,000 frame names (a busy
server's bucket at the daemon's 50,000-stack cap). With files it encodes each.
It prints the best of ``--runs`` for the plain encoding and for the encoding
fitted to Pyroscope's limits, and the sizes (uncompressed and gzip).
"""

from __future__ import annotations

import argparse
import gzip
import random
import time
from collections.abc import Callable
from pathlib import Path

from flamed.collapse.folded import Folded, read_folded
from flamed.render.pprof import PprofOptions, encode_profile, encode_within, gzipped


def synthetic(stacks: int, depth: int, seed: int = 1) -> Folded:
    rng = random.Random(seed)
    vocabulary = [f"module{i % 40}::function_{i}" for i in range(5_000)]
    folded = Folded()
    while len(folded) < stacks:
        frames = ["main", *rng.choices(vocabulary, k=rng.randint(depth // 2, depth * 3 // 2))]
        folded.add(";".join(frames), rng.randint(1, 50))
    return folded


def best(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def report(name: str, folded: Folded, runs: int) -> None:
    options = PprofOptions(frequency=99, start_ns=1, duration_ns=10**10)
    raw = encode_profile(folded, options)
    packed = gzipped(raw)
    frames = sum(stack.count(";") + 1 for stack in folded.counts)
    plain = best(runs, lambda: gzipped(encode_profile(folded, options)))
    encode_only = best(runs, lambda: encode_profile(folded, options))
    fitted = best(runs, lambda: encode_within(folded, options))
    kept = len(gzip.decompress(encode_within(folded, options).data))
    print(
        f"{name}: {len(folded)} stacks, {frames} frames; pprof {len(raw) / 1e6:.2f} MB, "
        f"gzip {len(packed) / 1e6:.2f} MB\n"
        f"  encode {encode_only * 1e3:.0f} ms ({frames / encode_only / 1e6:.2f} M frames/s), "
        f"encode+gzip {plain * 1e3:.0f} ms, "
        f"fitted to Pyroscope's limits {fitted * 1e3:.0f} ms ({kept / 1e6:.2f} MB kept)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=50_000)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    if args.files:
        for path in args.files:
            report(path.name, read_folded(path.read_bytes()), args.runs)
    else:
        report("synthetic", synthetic(args.stacks, args.depth), args.runs)


if __name__ == "__main__":
    main()
