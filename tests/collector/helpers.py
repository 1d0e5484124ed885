"""Helpers for the collector and `flamed record` tests: a CPU-burning C program, perf checks."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from flamed.collapse.folded import Folded

BURN_C = textwrap.dedent(
    """
    #include <stdlib.h>
    #include <time.h>
    volatile unsigned long sink;
    __attribute__((noinline)) void work(unsigned long n) {
        for (unsigned long i = 0; i < n; i++) sink += i * i;
    }
    __attribute__((noinline)) void light(void) { work(200000UL); }
    __attribute__((noinline)) void heavy(void) { work(600000UL); }
    int main(int argc, char **argv) {
        /* Runs for argv[1] seconds at most, so it never outlives a test. */
        time_t end = time(NULL) + (argc > 1 ? atol(argv[1]) : 30);
        while (time(NULL) < end) { light(); heavy(); }
        return 0;
    }
    """
)


def build_burn(folder: Path, name: str = "flamedburn") -> Path:
    """Compile the two-function program (heavy does 3x the work of light) with frame pointers."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (Debian: apt-get install gcc)")
    source = folder / "burn.c"
    source.write_text(BURN_C)
    binary = folder / name
    subprocess.run(
        [gcc, "-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(source)],
        check=True,
        capture_output=True,
    )
    return binary


_PERF_OK: str | None = None


def require_perf() -> str:
    """The perf binary's path, or skip saying why perf cannot sample here."""
    global _PERF_OK
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("perf is not installed (Debian: apt-get install linux-perf)")
    if _PERF_OK is None:
        done = subprocess.run(
            [perf, "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        _PERF_OK = "" if done.returncode == 0 else done.stderr.decode(errors="replace")[-300:]
    if _PERF_OK:
        pytest.skip(f"perf cannot sample here: {_PERF_OK}")
    return perf


def weight(folded: Folded, frame: str) -> float:
    """The samples of stacks passing through ``frame``."""
    return sum(count for stack, count in folded.items() if frame in stack.split(";"))


def heavy_light_ratio(folded: Folded) -> float:
    light = weight(folded, "light")
    assert light > 0, f"no samples in light(): {folded.sorted_items()[:10]}"
    return weight(folded, "heavy") / light
