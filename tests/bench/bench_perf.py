"""Benchmark `flamed collapse perf` against inferno-collapse-perf and stackcollapse-perf.pl.

    FLAMED_BENCH_PERF=/work/refs/data/diverse-40s.txt INFERNO_DIR=... FLAMEGRAPH_DIR=... \\
        python tests/bench/bench_perf.py [--input FILE]... [--runs 7] [--python]

Inputs: each --input, else $FLAMED_BENCH_PERF (a diverse whole-machine recording:
make one, outside the repository, with `sudo tests/bench/record_diverse.sh OUT.txt`:
40 s at 999 Hz while a pip install builds a C extension, gcc compiles and a C
program runs), then the corpus's example-perf-stacks with --all. For each: the
in-process throughput of one core (C speedups and pure Python), then the whole
`flamed collapse perf` process against inferno and the Perl script, their runs
alternating, medians and flamed's time over each reference's. For files folded
on several cores it also times `-n 1`, to show whether the split pays; for the
--all case a bare `python -c pass` too (the interpreter's own start-up).
--python times flamed with FLAMED_NO_EXTENSIONS=1. Run it with the Python of a
virtual environment flamed is installed in; quote medians, machines drift.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
from pathlib import Path

from flamed.collapse.perf import PerfCollapser, PerfOptions
from flamed.daemon.commands.collapse import PERF_NATIVE_SPLIT_BYTES, PERF_SPLIT_BYTES

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from tests.bench.timing import (  # noqa: E402
    Timings,
    compare,
    flamed_script,
    inferno_command,
    perl_command,
    report_in_process,
)

OUT = HERE / "out"
CORPUS = HERE.parents[2] / "shared" / "conformance" / "perf" / "example-perf-stacks.txt.gz"


def corpus_input() -> Path | None:
    if not CORPUS.exists():
        return None
    target = OUT / "example-perf-stacks.txt"
    if not target.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress(CORPUS.read_bytes()))
    return target


def bench(path: Path, options: list[str], runs: int, python: bool) -> None:
    annotate = "--all" in options
    report_in_process(
        path,
        {
            "C speedups": lambda: PerfCollapser(native_options(annotate), native=True),
            "pure Python": lambda: PerfCollapser(native_options(annotate), native=False),
        },
        runs=3,
    )
    extra: dict[str, Timings] = {}
    env = {"FLAMED_NO_EXTENSIONS": "1"} if python else None
    if path.stat().st_size >= (PERF_SPLIT_BYTES if python else PERF_NATIVE_SPLIT_BYTES):
        extra["flamed -n 1"] = Timings([flamed_script(), "collapse", "perf", "-n", "1", *options,
                                        str(path)], env)  # fmt: skip
    if annotate:
        extra["python -c pass"] = Timings([sys.executable, "-c", "pass"])
    args = [*options, str(path)]
    if python:
        print("  (flamed with FLAMED_NO_EXTENSIONS=1: the pure-Python path)")
        os.environ["FLAMED_NO_EXTENSIONS"] = "1"
    timings = compare(
        ["collapse", "perf", *args],
        {
            "inferno": inferno_command("inferno-collapse-perf", args),
            "perl": perl_command("stackcollapse-perf.pl", args),
        },
        runs,
        extra,
    )
    os.environ.pop("FLAMED_NO_EXTENSIONS", None)
    if annotate and "inferno" in timings:
        report_start_up(timings)


def report_start_up(timings: dict[str, Timings]) -> None:
    """The --all requirement: flamed's time less the interpreter's own start-up against
    inferno's, as a ratio of medians and as the median of each round's ratio (a round
    runs the three one after another, so they share the machine's load)."""
    start = timings["python -c pass"]
    flamed, inferno = timings["flamed"], timings["inferno"]
    mine = flamed.median - start.median
    rounds = [
        (ours - python) / theirs
        for ours, python, theirs in zip(flamed.walls, start.walls, inferno.walls, strict=True)
    ]
    print(
        f"  flamed minus python start-up: {mine:.4f} s; inferno: {inferno.median:.4f} s; "
        f"python -c pass: {start.median:.4f} s"
    )
    print(
        f"  (flamed - python) / inferno: {mine / inferno.median:.2f} (medians), "
        f"{statistics.median(rounds):.2f} (median of {len(rounds)} rounds)"
    )


def native_options(annotate: bool) -> PerfOptions:
    return PerfOptions(annotate_kernel=annotate, annotate_jit=annotate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", type=Path, help="perf script output")
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (7)")
    parser.add_argument("--python", action="store_true", help="time the pure-Python path")
    args = parser.parse_args()
    cases: list[tuple[Path, list[str]]] = [(path, []) for path in args.input or []]
    if not cases:
        diverse = os.environ.get("FLAMED_BENCH_PERF")
        if diverse:
            cases.append((Path(diverse), []))
        else:
            print("(set FLAMED_BENCH_PERF to a diverse recording; see this script's help)")
        corpus = corpus_input()
        if corpus is not None:
            cases.append((corpus, ["--all"]))
    for path, options in cases:
        bench(path, options, args.runs, args.python)


if __name__ == "__main__":
    main()
