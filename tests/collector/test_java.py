"""``java_perfmap = true`` on a real JVM (JDK 17): its Java methods named (issue 17).

One session after another samples the same JVM: without ``java_perfmap`` its
compiled methods are frames of an anonymous mapping perf cannot name
(``[perf-PID.map]``: a JVM writes no map unless asked); with it, flamed asks the
JVM for its map (the attach protocol, as ``jcmd PID Compiler.perfmap``) and reads it.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flamed.collector import Chunk, TargetSpec
from flamed.collector.java import is_jvm
from tests.collector.jit import excerpt, frames_named, start_java, stop, unknown_map_frames
from tests.collector.live import make, merged, until

pytestmark = [pytest.mark.perf, pytest.mark.slow]

METHODS = ("Hot.leafWork", "Hot.middleWork")


@pytest.fixture
def jvm(perf: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_java(tmp_path)
    yield proc
    stop(proc)


def java_named(chunks: list[Chunk]) -> float:
    return sum(frames_named(merged(chunks), method) for method in METHODS)


def java_sampled(chunks: list[Chunk]) -> Callable[[], bool]:
    return lambda: java_named(chunks) + unknown_map_frames(merged(chunks)) >= 50


async def test_java_methods_are_named_with_java_perfmap(
    jvm: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    assert is_jvm(Path("/proc"), jvm.pid)
    plain: list[Chunk] = []
    asked: list[Chunk] = []
    spec = TargetSpec("java", pids=(jvm.pid,), frequency=199)
    sessions = [make(spec, tmp_path, plain), make(spec, tmp_path, asked, java_perfmap=True)]
    for session, chunks in zip(sessions, (plain, asked), strict=True):
        # First without: once asked, the JVM's map is there for perf too.
        task = asyncio.create_task(session.run())
        try:
            await until(java_sampled(chunks), "50 samples in Java code")
        finally:
            await session.stop()
            await task
    before, after = merged(plain), merged(asked)
    assert java_named(plain) == 0, excerpt(before, "Hot.")
    assert unknown_map_frames(after) < 0.1 * java_named(asked), excerpt(after, ".map]")
    writer = sessions[1].jit.java
    assert writer is not None and writer.requests >= 1 and writer.failures == 0
    before, after = merged(plain), merged(asked)
    print("perf alone:\n" + excerpt(before, ".map]") + "\nflamed:\n" + excerpt(after, "Hot."))


def test_only_jvms_are_asked(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not is_jvm(Path("/proc"), proc.pid)
    finally:
        proc.kill()
        proc.wait()
