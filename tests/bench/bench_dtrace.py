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
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from flamed.collapse.dtrace import DTraceCollapser

HERE = Path(__file__).resolve().parent
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


def in_process_seconds(data: bytes, runs: int) -> float:
    """Best time to fold ``data`` fed in 1 MiB chunks, as the daemon feeds pipe reads."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        collapser = DTraceCollapser()
        for offset in range(0, len(data), CHUNK):
            collapser.feed(data[offset : offset + CHUNK])
        collapser.finish().to_bytes()
        best = min(best, time.perf_counter() - start)
    return best


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall_seconds(command: list[str], runs: int) -> tuple[float, float, bytes]:
    """Best wall time and best CPU time (user + system) of ``runs`` runs, and the output."""
    best, best_cpu, output = float("inf"), float("inf"), b""
    for _ in range(runs):
        cpu = child_cpu()
        start = time.perf_counter()
        output = subprocess.run(command, capture_output=True, check=True).stdout
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, child_cpu() - cpu)
    return best, best_cpu, output


def flamed_script() -> str:
    """The `flamed` script of this interpreter's environment (not a pyenv shim on PATH)."""
    beside = Path(sys.executable).with_name("flamed")
    return str(beside) if beside.exists() else shutil.which("flamed") or "flamed"


def report(path: Path, runs: int) -> None:
    data = path.read_bytes()
    mib = len(data) / (1 << 20)
    seconds = in_process_seconds(data, runs)
    print(f"{path.name}: {mib:.1f} MiB")
    print(f"  in-process collapse: {seconds:.3f} s, {mib / seconds:.0f} MiB/s")
    flamed = flamed_script()
    ours, our_cpu, our_output = wall_seconds([flamed, "-q", "collapse", "dtrace", str(path)], runs)
    print(f"  flamed collapse dtrace (whole process): {ours:.3f} s, CPU {our_cpu:.3f} s")
    flamegraph = os.environ.get("FLAMEGRAPH_DIR")
    if not flamegraph:
        print("  (set FLAMEGRAPH_DIR to a FlameGraph checkout to compare with the Perl script)")
        return
    script = str(Path(flamegraph) / "stackcollapse.pl")
    perl, perl_cpu, perl_output = wall_seconds(["perl", script, str(path)], max(1, runs // 2))
    same = "identical output" if perl_output == our_output else "outputs differ"
    print(f"  stackcollapse.pl (whole process): {perl:.3f} s, CPU {perl_cpu:.3f} s")
    print(f"  ratio: {perl / ours:.1f}x faster (CPU time: {perl_cpu / our_cpu:.1f}x); {same}")


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
            report(path, args.runs)


if __name__ == "__main__":
    main()
