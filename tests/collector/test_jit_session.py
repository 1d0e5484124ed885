"""Perf sessions name JIT frames from the target's perf map as it grows (issue 17).

Real Node (``--perf-basic-prof``) under two sessions at once: one as perf alone
names frames (``perf_maps = false``), one with flamed reading the map. Both see
``earlyLeaf`` (so their perf script has read the map); then the program compiles
``lateLeaf``, a function it never had: the long-lived perf script never reads the
map again, so only the session reading it names ``lateLeaf``.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collector import Chunk, TargetSpec
from flamed.collector.perf import PerfSession
from tests.collector.jit import (
    EARLY,
    LATE,
    compile_late,
    excerpt,
    frames_named,
    start_node,
    stop,
    unknown_map_frames,
)
from tests.collector.live import make, merged, until

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.fixture
def node(perf: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_node(f"flamedtest-{uuid.uuid4().hex[:8]}")
    yield proc
    stop(proc)


def node_session(pid: int, tmp_path: Path, chunks: list[Chunk], **options: object) -> PerfSession:
    spec = TargetSpec("node", pids=(pid,), frequency=199)
    return make(spec, tmp_path, chunks, **options)


async def test_a_function_compiled_after_sampling_started_is_named(
    node: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    plain: list[Chunk] = []
    mapped: list[Chunk] = []
    sessions = [
        node_session(node.pid, tmp_path, plain, perf_maps=False),
        node_session(node.pid, tmp_path, mapped),
    ]
    tasks = [asyncio.create_task(session.run()) for session in sessions]
    try:
        await until(lambda: frames_named(merged(plain), EARLY) > 0, "earlyLeaf: perf alone")
        await until(lambda: frames_named(merged(mapped), EARLY) > 0, "earlyLeaf: flamed")
        compile_late(node)
        plain.clear()
        mapped.clear()
        await until(lambda: frames_named(merged(mapped), LATE) >= 20, "lateLeaf named")
        await until(lambda: unknown_map_frames(merged(plain)) >= 20, "perf alone: unknown")
    finally:
        for session in sessions:
            await session.stop()
        await asyncio.gather(*tasks)
    before, after = merged(plain), merged(mapped)
    assert frames_named(before, LATE) == 0, excerpt(before, LATE)
    assert unknown_map_frames(after) < 0.1 * after.total(), excerpt(after, ".map]")
    print("perf alone:\n" + excerpt(before, ".map]") + "\nflamed:\n" + excerpt(after, LATE))
