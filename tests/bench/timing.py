"""Whole-process timing shared by the benchmarks: wall and CPU times, and ratios."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flamed.collapse.common import Collapser


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Timings:
    """Wall and CPU times (user + system, children included) of one command's runs."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.output = b""

    def run(self) -> None:
        cpu = child_cpu()
        start = time.perf_counter()
        self.output = subprocess.run(self.command, capture_output=True, check=True).stdout
        self.walls.append(time.perf_counter() - start)
        self.cpus.append(child_cpu() - cpu)

    def __str__(self) -> str:
        return (
            f"best {min(self.walls):.3f} s, median {statistics.median(self.walls):.3f} s, "
            f"CPU best {min(self.cpus):.3f} s"
        )


def flamed_script() -> str:
    """The `flamed` script of this interpreter's environment (not a pyenv shim on PATH)."""
    beside = Path(sys.executable).with_name("flamed")
    return str(beside) if beside.exists() else shutil.which("flamed") or "flamed"


def compare(ours: list[str], script: str, reference_args: list[str], runs: int) -> None:
    """Time `flamed ...` and, when FLAMEGRAPH_DIR is set, `perl $FLAMEGRAPH_DIR/script ...`,
    their runs interleaved: the speed of a shared machine drifts over seconds, and
    interleaving gives both commands the same drift."""
    flamed = Timings([flamed_script(), *ours])
    flamegraph = os.environ.get("FLAMEGRAPH_DIR")
    perl = Timings(["perl", str(Path(flamegraph or ".") / script), *reference_args])
    for _ in range(runs):
        flamed.run()
        if flamegraph:
            perl.run()
    print(f"  flamed {' '.join(ours[:2])} (whole process): {flamed}")
    if not flamegraph:
        print("  (set FLAMEGRAPH_DIR to a FlameGraph checkout to compare with the Perl script)")
        return
    print(f"  {script} (whole process): {perl}")
    best = min(perl.walls) / min(flamed.walls)
    median = statistics.median(perl.walls) / statistics.median(flamed.walls)
    cpu = min(perl.cpus) / min(flamed.cpus)
    print(f"  ratio: {best:.1f}x faster (best), {median:.1f}x (median), CPU {cpu:.1f}x")
    print(f"  output: {differences(flamed.output, perl.output)}")


def differences(ours: bytes, theirs: bytes) -> str:
    if ours == theirs:
        return "identical"
    mine, reference = set(ours.splitlines()), set(theirs.splitlines())
    return (
        f"{len(mine - reference)} of {len(mine)} lines differ from the reference's "
        f"{len(reference)} (flamed's fixes of the Perl script, listed in the README)"
    )


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
