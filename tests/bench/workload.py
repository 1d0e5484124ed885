"""The workloads the overhead benchmarks sample: a C burner, plus a churn of short-lived programs.

``burn`` is the two-function test program (one core, frame pointers). ``churn``
is a shell loop that keeps starting different short-lived binaries, the mix a
real server runs: gzip, sha256sum, perl, python3, gcc and node on small
inputs, then a short sleep. Each new binary is a new set of symbols for perf
script to load, which is what made a ``perf script`` per bucket expensive.
Programs that are not installed are left out of the loop (and said so).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.collector.helpers import BURN_C  # noqa: E402

SMALL_C = "static int f(int x) { return 3 * x + 1; }\nint g(int n) { return f(n) + f(n + 1); }\n"
STEPS = {
    "gzip": "gzip -c blob > /dev/null",
    "sha256sum": "sha256sum blob > /dev/null",
    "perl": "perl -e 'my $s = 0; $s += $_ for 1..200000; print $s' > /dev/null",
    "python3": "/usr/bin/python3 -c 'print(sum(range(300000)))' > /dev/null",
    "gcc": "gcc -O1 -c small.c -o /dev/null",
    "node": "node -e 'let s = 0; for (let i = 0; i < 1e6; i++) s += i; console.log(s)' > /dev/null",
}
PAUSE = 0.3
"""Seconds the churn loop sleeps after each round of programs."""


def build_burner(folder: Path) -> Path:
    """The test program, under a name of its own: tests look for ``flamedburn`` processes."""
    (folder / "burn.c").write_text(BURN_C)
    binary = folder / "benchburn"
    subprocess.run(
        ["gcc", "-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(folder / "burn.c")],
        check=True,
    )
    return binary


def churn_script(folder: Path) -> Path:
    """Write the churn loop and its inputs into ``folder``; returns the script."""
    (folder / "small.c").write_text(SMALL_C)
    (folder / "blob").write_bytes(os.urandom(300_000))
    steps = []
    for program, line in STEPS.items():
        # python3 is Debian's own: a pyenv shim on PATH would start a shell script first
        found = Path("/usr/bin/python3").exists() if program == "python3" else shutil.which(program)
        if found:
            steps.append(line)
        else:
            print(f"  (churn: {program} not installed, left out)")
    body = "\n  ".join(steps)
    script = folder / "churn.sh"
    script.write_text(
        f'#!/bin/sh\ncd "$(dirname "$0")"\nwhile :; do\n  {body}\n  sleep {PAUSE}\ndone\n'
    )
    script.chmod(0o755)
    return script


class Workload:
    """The burner (and, for ``mixed``, the churn loop) running until ``stop()``."""

    def __init__(self, folder: Path, kind: str) -> None:
        self.procs = [subprocess.Popen([str(build_burner(folder)), "100000"])]
        if kind == "mixed":
            churn = subprocess.Popen([str(churn_script(folder))], process_group=0)
            self.procs.append(churn)

    @property
    def burner_pid(self) -> int:
        return self.procs[0].pid

    def stop(self) -> None:
        self.procs[0].kill()
        for churn in self.procs[1:]:  # the loop leads its own group: its programs go too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(churn.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
