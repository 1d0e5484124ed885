"""Perf sessions name JIT frames from the target's perf map as it grows (issue 17).

For a process on this host and for one in its own pid and mount namespace
(``unshare``, a /tmp of its own: its map is /tmp/perf-1.map there).

Real Node (``--perf-basic-prof``) under two sessions at once: one as perf alone
names frames (``perf_maps = false``), one with flamed reading the map. Both see
``earlyLeaf`` (so their perf script has read the map); then the program compiles
``lateLeaf``, a function it never had: the long-lived perf script never reads the
map again, so only the session reading it names ``lateLeaf``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import pytest

from flamed.collapse.folded import read_folded
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
from tests.conftest import DATA

pytestmark = [pytest.mark.perf, pytest.mark.slow]


UNSHARE = (
    "unshare",
    "--pid",
    "--mount",
    "--fork",
    "--mount-proc",
    "sh",
    "-c",
    'mount -t tmpfs flamedtmp /tmp && exec "$@"',
    "sh",
)
"""Its own pid namespace (node is pid 1 there, writing /tmp/perf-1.map) and its own /tmp."""


@pytest.fixture(params=["host", "unshare"])
def node(
    perf: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[int, Popen[bytes]]]:
    """(the pid perf sees, the process whose pipes drive the program)."""
    prefix = UNSHARE if request.param == "unshare" else ()
    proc = start_node(f"flamedtest-{uuid.uuid4().hex[:8]}", tmp_path, prefix=prefix)
    try:
        pid = only_child(proc.pid) if prefix else proc.pid
        if prefix:  # the map is where only flamed looks for it
            assert Path(f"/proc/{pid}/root/tmp/perf-1.map").is_file()
            assert not Path(f"/tmp/perf-{pid}.map").exists()
        yield pid, proc
    finally:
        stop(proc)


def only_child(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def node_session(pid: int, tmp_path: Path, chunks: list[Chunk], **options: object) -> PerfSession:
    spec = TargetSpec("node", pids=(pid,), frequency=199)
    return make(spec, tmp_path, chunks, **options)


async def test_a_function_compiled_after_sampling_started_is_named(
    node: tuple[int, Popen[bytes]], tmp_path: Path
) -> None:
    pid, proc = node
    plain: list[Chunk] = []
    mapped: list[Chunk] = []
    sessions = [
        node_session(pid, tmp_path, plain, perf_maps=False),
        node_session(pid, tmp_path, mapped),
    ]
    tasks = [asyncio.create_task(session.run()) for session in sessions]
    try:
        await until(lambda: frames_named(merged(plain), EARLY) > 0, "earlyLeaf: perf alone")
        await until(lambda: frames_named(merged(mapped), EARLY) > 0, "earlyLeaf: flamed")
        compile_late(proc)
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


async def test_jitdump_names_node_perf_prof_frames(perf: str, tmp_path: Path) -> None:
    """``jitdump = true``: flamed reads the jitdump file of a JIT that writes one
    (``node --perf-prof``, no perf map) and names its code, compiled late too."""
    proc = start_node(
        f"flamedtest-{uuid.uuid4().hex[:8]}", tmp_path, flags=("--perf-prof", "--no-turbo-inlining")
    )
    plain: list[Chunk] = []
    injected: list[Chunk] = []
    sessions = [
        node_session(proc.pid, tmp_path, plain),
        node_session(proc.pid, tmp_path, injected, jitdump=True),
    ]
    tasks = [asyncio.create_task(session.run()) for session in sessions]
    try:
        await until(lambda: frames_named(merged(injected), EARLY) > 0, "earlyLeaf: jitdump")
        compile_late(proc)
        await until(lambda: frames_named(merged(injected), LATE) >= 20, "lateLeaf: jitdump")
        await until(lambda: unknown_map_frames(merged(plain)) >= 20, "perf alone: unknown")
    finally:
        for session in sessions:
            await session.stop()
        await asyncio.gather(*tasks)
        stop(proc)
    before, after = merged(plain), merged(injected)
    assert frames_named(before, EARLY) == frames_named(before, LATE) == 0, excerpt(before, "JS:")
    print("perf alone:\n" + excerpt(before, ".map]") + "\njitdump:\n" + excerpt(after, LATE))
    assert (tmp_path / f"jit-{proc.pid}.dump").is_file()


def test_python_view_folds_each_bucket_in_the_python_view(tmp_path: Path) -> None:
    """``python_view = true``: the session's collapsers give CPython's ``py::`` frames as
    Python functions (the recorded 3.12 ``-X perf`` stacks of tests/data/perf)."""
    text = (DATA / "perf" / "python-trampoline.txt").read_bytes()
    views = {}
    for python_view in (False, True):
        session = node_session(1, tmp_path, [], python_view=python_view)
        collapser = session.new_collapser()
        collapser.feed(text)
        views[python_view] = collapser.finish()
    expected = read_folded((DATA / "perf" / "python-trampoline.python.folded").read_bytes())
    assert set(views[True].counts) == set(expected.counts)
    assert all("py::" in stack for stack, _ in views[False].items() if "script.py" in stack)
