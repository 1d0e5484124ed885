"""Real JIT programs for the tests: Node with ``--perf-basic-prof``, a JVM with its perf map."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from flamed.collapse.folded import Folded
from tests.conftest import DATA

LATE_JS = DATA / "node" / "late.js"
HOT_JAVA = DATA / "java" / "Hot.java"
EARLY = "earlyLeaf"
LATE = "lateLeaf"
"""The function tests/data/node/late.js first compiles when told to (a line on stdin)."""
NODE_FLAGS = ("--perf-basic-prof", "--no-turbo-inlining")
"""A perf map, and each JS function a frame of its own (not inlined into its caller)."""


def require(program: str, package: str) -> str:
    found = shutil.which(program)
    if found is None:
        pytest.skip(f"{program} is not installed (Debian: apt-get install {package})")
    return found


def start_node(
    tag: str,
    cwd: Path,
    seconds: int = 90,
    prefix: Sequence[str] = (),
    flags: Sequence[str] = NODE_FLAGS,
) -> subprocess.Popen[bytes]:
    """late.js under ``prefix`` (a namespace wrapper), spinning in earlyLeaf; ``tag`` marks
    its command line. It runs in ``cwd``, where V8 leaves a log (isolate-*-v8.log).
    Returns once it runs JavaScript."""
    node = require("node", "nodejs")
    argv = [*prefix, node, *flags, str(LATE_JS), str(seconds), tag]
    return ready(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd))


def compile_late(proc: subprocess.Popen[bytes]) -> None:
    """Make the program compile lateLeaf now, and spin in it."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"late\n"


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill it, close its pipes, remove the map it left in this /tmp."""
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    Path(f"/tmp/perf-{proc.pid}.map").unlink(missing_ok=True)


def start_java(
    folder: Path, seconds: int = 90, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """tests/data/java/Hot.java compiled into ``folder`` and run with frame pointers, under
    ``prefix`` (a namespace wrapper); returns once it runs Java."""
    javac = require("javac", "openjdk-17-jdk-headless")
    java = require("java", "openjdk-17-jdk-headless")
    subprocess.run([javac, "-d", str(folder), str(HOT_JAVA)], check=True, capture_output=True)
    argv = [*prefix, java, "-XX:+PreserveFramePointer", "-cp", str(folder), "Hot", str(seconds)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    return ready(proc)


def ready(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """``proc`` once it said ``ready``; killed (and the test failed) if it never does."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != b"ready\n":
        stop(proc)
        raise AssertionError(f"the program did not start: {line!r}")
    return proc


def frames_named(folded: Folded, name: str) -> float:
    """Samples of stacks naming ``name`` (Node writes ``JS:*name FILE``, Java ``long Hot.name``)."""
    return sum(count for stack, count in folded.items() if name in stack)


def unknown_map_frames(folded: Folded) -> float:
    """Samples of stacks with a perf-map frame perf could not name (``[perf-PID.map]``)."""
    return sum(count for stack, count in folded.items() if ".map]" in stack)


def excerpt(folded: Folded, name: str, lines: int = 2) -> str:
    """The heaviest stacks holding ``name`` (or unknown map frames), their last frames, for
    failure messages and the report."""
    chosen = [
        (count, ";".join(stack.split(";")[-3:])) for stack, count in folded.items() if name in stack
    ]
    return "\n".join(f"{stack} {count:g}" for count, stack in sorted(chosen)[-lines:])
