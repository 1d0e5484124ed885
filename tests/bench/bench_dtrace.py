"""Benchmark `flamed collapse dtrace` against stackcollapse.pl.

    python tests/bench/bench_dtrace.py [--input FILE]... [--megabytes 20] [--runs 5]

Without --input it builds one large aggregation from the corpus's
example-dtrace-stacks: its header, then its stacks repeated to about
--megabytes MB (kept in tests/bench/out/). It prints in-process throughput
(MiB/s) and, when FLAMEGRAPH_DIR points at a FlameGraph checkout, the
whole-process wall-time and CPU-time ratios (best of --runs) against `perl stackcollapse.pl`,
and whether the two outputs are identical. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flamed.collapse.dtrace import DTraceCollapser

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from tests.bench.timing import report_collapse  # noqa: E402

OUT = HERE / "out"
CORPUS = HERE.parents[2] / "shared" / "conformance" / "dtrace" / "example-dtrace-stacks.txt"
CHUNK = 1 << 20


def repeated_input(megabytes: int) -> Path | None:
    """The corpus example's header once, then its stacks again and again (one big dump)."""
    if not CORPUS.exists():
        return None
    target = OUT / f"example-dtrace-stacks-{megabytes}MB.txt"
    if target.exists():
        return target
    lines = CORPUS.read_bytes().split(b"\n")
    head = b"\n".join(lines[:3]) + b"\n"
    body = b"\n".join(lines[3:]).rstrip(b"\n") + b"\n\n"
    copies = max(1, megabytes * 1_000_000 // len(body))
    OUT.mkdir(parents=True, exist_ok=True)
    target.write_bytes(head + body * copies)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", type=Path, help="DTrace aggregation output")
    parser.add_argument("--megabytes", type=int, default=20, help="size of the built input")
    parser.add_argument("--runs", type=int, default=5, help="best of this many runs")
    args = parser.parse_args()
    inputs = args.input or [repeated_input(args.megabytes)]
    for path in inputs:
        if path is None:
            print(f"no input: the corpus ({CORPUS}) is absent; pass --input FILE")
        else:
            script = "stackcollapse.pl"
            report_collapse(path, DTraceCollapser, "dtrace", script, args.runs, chunk=CHUNK)


if __name__ == "__main__":
    main()
