"""Benchmark `flamed collapse perf` against stackcollapse-perf.pl.

    python tests/bench/bench_perf.py [--input FILE]... [--seconds 40] [--runs 5]

Without --input it records a continuous whole-system profile with real perf
(999 Hz on every CPU while a CPU-bound C program and a Python program run; kept
in tests/bench/out/ for later runs) and also uses the corpus's
example-perf-stacks. It prints in-process throughput (MiB/s) and, when
FLAMEGRAPH_DIR points at a FlameGraph checkout, the whole-process wall-time
ratios (best and median of --runs; the two commands' runs alternate) and the
CPU-time ratio against `perl stackcollapse-perf.pl`. Run it with the Python of
a virtual environment flamed is installed in (its `flamed` script is the one
timed), on a quiet machine: other load skews the wall times.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

from flamed.collapse.perf import PerfCollapser

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from tests.bench.timing import report_collapse  # noqa: E402

OUT = HERE / "out"
CORPUS = HERE.parents[2] / "shared" / "conformance" / "perf" / "example-perf-stacks.txt.gz"

BURN_C = r"""
volatile unsigned long sink;
__attribute__((noinline)) void light(unsigned long n)
{ for (unsigned long i = 0; i < n; i++) sink += i; }
__attribute__((noinline)) void heavy(unsigned long n)
{ for (unsigned long i = 0; i < 3 * n; i++) sink += i; }
int main(void) { for (;;) { light(1000000); heavy(1000000); } }
"""
PY_WORK = """
import time
def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)
end = time.time() + 3600
while time.time() < end:
    fib(20); sorted(str(i) for i in range(50000))
"""


def record_system(seconds: int) -> Path:
    """A continuous whole-system recording, made once and kept."""
    target = OUT / f"system-{seconds}s.txt"
    if target.exists():
        return target
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        burn = Path(tmp) / "burn"
        (Path(tmp) / "burn.c").write_text(BURN_C)
        subprocess.run(
            ["gcc", "-O0", "-fno-omit-frame-pointer", "-o", burn, f"{tmp}/burn.c"], check=True
        )
        workers = [subprocess.Popen([burn]), subprocess.Popen([sys.executable, "-c", PY_WORK])]
        try:
            data = Path(tmp) / "perf.data"
            subprocess.run(
                [
                    "perf",
                    "record",
                    "-e",
                    "cpu-clock",
                    "-F",
                    "999",
                    "-a",
                    "-g",
                    "-q",
                    "-o",
                    data,
                    "--",
                    "sleep",
                    str(seconds),
                ],
                check=True,
            )
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
        with open(target, "wb") as out:
            subprocess.run(
                ["perf", "script", "-i", data], stdout=out, check=True, stderr=subprocess.DEVNULL
            )
    return target


def corpus_input() -> Path | None:
    if not CORPUS.exists():
        return None
    target = OUT / "example-perf-stacks.txt"
    if not target.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress(CORPUS.read_bytes()))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", type=Path, help="perf script output")
    parser.add_argument("--seconds", type=int, default=40, help="length of the recording")
    parser.add_argument("--runs", type=int, default=5, help="best of this many runs")
    args = parser.parse_args()
    inputs = args.input or [record_system(args.seconds), corpus_input()]
    for path in inputs:
        if path is not None:
            report_collapse(path, PerfCollapser, "perf", "stackcollapse-perf.pl", args.runs)


if __name__ == "__main__":
    main()
