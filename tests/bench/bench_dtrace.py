"""Benchmark `flamed collapse dtrace` against inferno-collapse-dtrace and stackcollapse.pl.

    INFERNO_DIR=... FLAMEGRAPH_DIR=... python tests/bench/bench_dtrace.py \\
        [--input FILE]... [--megabytes 16] [--runs 7] [--python]

Without --input it builds one large aggregation from the corpus's
example-dtrace-stacks: its header, then its stacks repeated to at least
--megabytes MB (kept in tests/bench/out/). It prints the in-process throughput of
one core (C speedups and pure Python, fed 1 MiB at a time as a pipe would) and
then the whole `flamed collapse dtrace` process against inferno and the Perl
script, their runs alternating: medians, flamed's time over each reference's,
and whether the outputs are identical. --python times flamed with
FLAMED_NO_EXTENSIONS=1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flamed.collapse.dtrace import DTraceCollapser

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from tests.bench.timing import (  # noqa: E402
    compare,
    inferno_command,
    perl_command,
    report_in_process,
)

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
    copies = max(1, -(-megabytes * 1_000_000 // len(body)))
    OUT.mkdir(parents=True, exist_ok=True)
    target.write_bytes(head + body * copies)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", type=Path, help="DTrace aggregation output")
    parser.add_argument("--megabytes", type=int, default=16, help="size of the built input")
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (7)")
    parser.add_argument("--python", action="store_true", help="time the pure-Python path")
    args = parser.parse_args()
    inputs = args.input or [repeated_input(args.megabytes)]
    for path in inputs:
        if path is None:
            print(f"no input: the corpus ({CORPUS}) is absent; pass --input FILE")
            continue
        makers = {
            "C speedups": lambda: DTraceCollapser(native=True),
            "pure Python": lambda: DTraceCollapser(native=False),
        }
        report_in_process(path, makers, runs=3, chunk=CHUNK)
        if args.python:
            print("  (flamed with FLAMED_NO_EXTENSIONS=1: the pure-Python path)")
            os.environ["FLAMED_NO_EXTENSIONS"] = "1"
        refs = {
            "inferno": inferno_command("inferno-collapse-dtrace", [str(path)]),
            "perl": perl_command("stackcollapse.pl", [str(path)]),
        }
        compare(["collapse", "dtrace", str(path)], refs, args.runs)
        os.environ.pop("FLAMED_NO_EXTENSIONS", None)


if __name__ == "__main__":
    main()
