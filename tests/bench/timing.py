"""Whole-process timing shared by the benchmarks: alternating runs, medians and ratios.

The references are optional: FLAMEGRAPH_DIR (a FlameGraph checkout: the Perl
scripts) and INFERNO_DIR (a folder with inferno's binaries, e.g. built by
shared/tools/build-inferno.sh). The commands' runs alternate (A B C A B C ...):
the speed of a shared machine drifts over seconds, and alternating gives every
command the same drift. Figures are medians; ratios are flamed's time over the
reference's (below 1.0: flamed is faster).
"""

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

PERL_DIR = "FLAMEGRAPH_DIR"
INFERNO_DIR = "INFERNO_DIR"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Timings:
    """Wall and CPU times (user + system) of one command's runs, and its last output."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.command = command
        self.env = env
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.output = b""

    def run(self) -> None:
        cpu = child_cpu()
        start = time.perf_counter()
        env = measured_environment(self.env)
        done = subprocess.run(self.command, capture_output=True, check=False, env=env)
        self.walls.append(time.perf_counter() - start)
        self.cpus.append(child_cpu() - cpu)
        if done.returncode not in (0, 2):  # 2: flamegraph.pl and flamed with no samples
            raise SystemExit(f"{' '.join(self.command)} failed: {done.stderr[-500:]!r}")
        self.output = done.stdout

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    def __str__(self) -> str:
        return (
            f"median {self.median:.3f} s, best {min(self.walls):.3f} s, "
            f"CPU median {statistics.median(self.cpus):.3f} s ({len(self.walls)} runs)"
        )


def measured_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment for a measured command, less PYTHONDONTWRITEBYTECODE: an
    installed flamed runs from compiled bytecode (pip writes it at install), and
    compiling every module at each start would be measured instead (~45 ms)."""
    env = {**os.environ, **(extra or {})}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def flamed_script() -> str:
    """The `flamed` script of this interpreter's environment (not a pyenv shim on PATH)."""
    beside = Path(sys.executable).with_name("flamed")
    return str(beside) if beside.exists() else shutil.which("flamed") or "flamed"


def perl_command(script: str, args: list[str]) -> list[str] | None:
    folder = os.environ.get(PERL_DIR)
    return ["perl", str(Path(folder) / script), *args] if folder else None


def inferno_command(binary: str, args: list[str]) -> list[str] | None:
    folder = os.environ.get(INFERNO_DIR)
    return [str(Path(folder) / binary), *args] if folder else None


def alternate(timings: dict[str, Timings], runs: int) -> None:
    """Run every command once to warm up (bytecode written, files cached), then
    ``runs`` times, in turn: A B C A B C ..."""
    for timing in timings.values():
        timing.run()
        timing.walls.clear()
        timing.cpus.clear()
    for _ in range(runs):
        for timing in timings.values():
            timing.run()


def compare(
    ours: list[str],
    references: dict[str, list[str] | None],
    runs: int,
    extra: dict[str, Timings] | None = None,
    check_output: bool = True,
) -> dict[str, Timings]:
    """Time `flamed OURS` against each reference command that is set, alternating, and
    print each one's figures and flamed's time over each reference's, pair by pair
    (and whether the outputs are identical, with ``check_output``)."""
    timings = {"flamed": Timings([flamed_script(), *ours])}
    timings.update({name: Timings(cmd) for name, cmd in references.items() if cmd is not None})
    timings.update(extra or {})
    alternate(timings, runs)
    for name, timing in timings.items():
        label = " ".join(["flamed", *ours[:3]]) if name == "flamed" else name
        print(f"  {label}: {timing}")
    flamed = timings["flamed"]
    for name in references:
        if name in timings:
            ratio = flamed.median / timings[name].median
            line = f"  flamed / {name}: {ratio:.2f} (median wall time)"
            if check_output:
                line += f"; output {differences(flamed.output, timings[name].output)}"
            print(line)
        else:
            variable = INFERNO_DIR if name == "inferno" else PERL_DIR
            print(f"  ({name}: set {variable} to compare)")
    return timings


def differences(ours: bytes, theirs: bytes) -> str:
    if ours == theirs:
        return "identical"
    mine, reference = set(ours.splitlines()), set(theirs.splitlines())
    return (
        f"differs: {len(mine - reference)} of {len(mine)} lines not in the reference's "
        f"{len(reference)} (flamed's documented fixes, see the README)"
    )


def in_process(data: bytes, make: Callable[[], Collapser], runs: int, chunk: int = 0) -> float:
    """The best time of ``make()``'s collapser on ``data`` in this process (one core), fed
    whole or in ``chunk`` bytes as the daemon feeds pipe reads, output written."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        collapser = make()
        size = chunk or max(len(data), 1)
        for offset in range(0, len(data), size):
            collapser.feed(data[offset : offset + size])
        collapser.finish().to_bytes()
        best = min(best, time.perf_counter() - start)
    return best


def report_in_process(
    path: Path, makers: dict[str, Callable[[], Collapser]], runs: int, chunk: int = 0
) -> None:
    data = path.read_bytes()
    mib = len(data) / (1 << 20)
    print(f"{path.name}: {mib:.1f} MiB")
    for name, make in makers.items():
        best = in_process(data, make, runs, chunk)
        print(f"  in-process, one core, {name}: {best:.3f} s, {mib / best:.0f} MiB/s")
