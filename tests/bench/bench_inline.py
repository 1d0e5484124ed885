"""Benchmark `flamed collapse perf --inline` against `stackcollapse-perf.pl --inline`.

    python tests/bench/bench_inline.py [--input FILE] [--seconds 3] [--runs 3]

Without --input it records one: `perf record -g` of a Python program parsing
JSON for --seconds (thousands of distinct frames in python3.11, libc, lib-dynload
modules), then `perf script --no-inline` (kept in tests/bench/out/). It prints
the whole-process wall and CPU times of both, their runs interleaved, and
whether the outputs are identical (FLAMEGRAPH_DIR must point at a FlameGraph
checkout for the comparison). Needs perf and permission to sample.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from tests.bench.timing import compare  # noqa: E402

OUT = HERE / "out"
WORKLOAD = """
import json, re, time
start = time.time()
data = [{"a": i, "b": str(i) * 3} for i in range(20000)]
while time.time() - start < SECONDS:
    text = json.dumps(data)
    json.loads(text)
    re.findall(r"[0-9]+", text[:100000])
"""


def recorded(seconds: float) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    data, text = OUT / "inline-python.data", OUT / "inline-python.txt"
    program = WORKLOAD.replace("SECONDS", str(seconds))
    record = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-g", "-o", str(data)]
    subprocess.run([*record, "--", sys.executable, "-c", program], check=True)
    with text.open("wb") as out:
        script = ["perf", "script", "--no-inline", "-i", str(data)]
        subprocess.run(script, stdout=out, stderr=subprocess.DEVNULL, check=True)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="`perf script --no-inline` output")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the recording")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command")
    args = parser.parse_args()
    path = args.input or recorded(args.seconds)
    print(f"{path.name}: {path.stat().st_size / (1 << 20):.1f} MiB")
    for extra in ([], ["--context"]):
        options = ["--inline", *extra]
        compare(
            ["-q", "collapse", "perf", *options, str(path)],
            "stackcollapse-perf.pl",
            [*options, str(path)],
            args.runs,
        )


if __name__ == "__main__":
    main()
