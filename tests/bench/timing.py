"""Whole-process timing shared by the benchmarks: best wall and CPU time, and the ratio."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flamed.collapse.common import Collapser


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best_of(command: list[str], runs: int) -> tuple[float, float, bytes]:
    """Best wall time and best CPU time (user + system, children included) and the output."""
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


def compare(ours: list[str], script: str, reference_args: list[str], runs: int) -> None:
    """Time `flamed ...` and, when FLAMEGRAPH_DIR is set, `perl $FLAMEGRAPH_DIR/script ...`."""
    wall, cpu, our_output = best_of([flamed_script(), *ours], runs)
    print(f"  flamed {' '.join(ours[:2])} (whole process): {wall:.3f} s, CPU {cpu:.3f} s")
    flamegraph = os.environ.get("FLAMEGRAPH_DIR")
    if not flamegraph:
        print("  (set FLAMEGRAPH_DIR to a FlameGraph checkout to compare with the Perl script)")
        return
    command = ["perl", str(Path(flamegraph) / script), *reference_args]
    perl, perl_cpu, perl_output = best_of(command, max(1, runs // 2))
    same = "identical output" if perl_output == our_output else "outputs differ"
    print(f"  {script} (whole process): {perl:.3f} s, CPU {perl_cpu:.3f} s")
    print(f"  ratio: {perl / wall:.1f}x faster (CPU time: {perl_cpu / cpu:.1f}x); {same}")


def report_collapse(
    path: Path, make: Callable[[], Collapser], fmt: str, script: str, runs: int, chunk: int = 0
) -> None:
    """In-process throughput of ``make()``'s collapser on FILE (fed whole, or in ``chunk``
    bytes as the daemon feeds pipe reads), then `flamed collapse FMT` against ``script``."""
    data = path.read_bytes()
    mib = len(data) / (1 << 20)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        collapser = make()
        size = chunk or max(len(data), 1)
        for offset in range(0, len(data), size):
            collapser.feed(data[offset : offset + size])
        collapser.finish().to_bytes()
        best = min(best, time.perf_counter() - start)
    print(f"{path.name}: {mib:.1f} MiB")
    print(f"  in-process collapse: {best:.3f} s, {mib / best:.0f} MiB/s")
    compare(["-q", "collapse", fmt, str(path)], script, [str(path)], runs)
