"""The off-CPU session against real BPF: blocked time per stack, and how it fails.

``tests/data/offcpu/waiter.c`` sleeps in ``wait_here()`` (nanosleep, 10 ms at a
time) and waits for a mutex in ``lock_wait_here()`` while another thread holds
it for 20 ms at a time; it measures the time spent inside both with
``CLOCK_MONOTONIC`` itself and prints it. The session's sums for the stacks
through each function must be within 10 % of that. The failure tests run the real
bpftrace behind a wrapper that takes away what it needs (fault injection).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flamed.collapse.errors import ProfilerError
from flamed.collapse.folded import Folded
from flamed.collector import Chunk, TargetSpec, create_session
from flamed.collector.offcpu import (
    OffCpuCollapser,
    OffCpuSession,
    offcpu_problems,
    program,
    tracefs_missing,
)
from flamed.collector.targets import Resolution
from tests.collector.helpers import weight

WAITER_C = Path(__file__).parent.parent / "data" / "offcpu" / "waiter.c"
RUN_SECONDS = 30.0
"""The issue's 30 s: the error is mostly per block (rounding, the dumps at both ends),
so a shorter run would pass as well; 30 s (about 35 s with start-up) is kept as asked."""


def require_bpftrace() -> str:
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None:
        pytest.skip("bpftrace is not installed (Debian: apt-get install bpftrace)")
    if os.geteuid() != 0:
        pytest.skip("bpftrace runs only as root")
    if tracefs_missing((Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))):
        pytest.skip("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
    return bpftrace


@pytest.fixture
def waiter(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (Debian: apt-get install gcc)")
    binary = tmp_path / "waiter"
    flags = ["-O1", "-g", "-fno-omit-frame-pointer", "-pthread"]
    subprocess.run([gcc, *flags, "-o", str(binary), str(WAITER_C)], check=True)
    proc = subprocess.Popen(
        [str(binary), str(RUN_SECONDS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    with proc:
        yield proc
        proc.kill()


def total(chunks: list[Chunk]) -> Folded:
    out = Folded()
    for chunk in chunks:
        out.update(chunk.folded)
    return out


async def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_blocked_time_within_ten_percent(waiter: subprocess.Popen[str]) -> None:
    bpftrace = require_bpftrace()
    chunks: list[Chunk] = []
    spec = TargetSpec(name="waiter", pids=(waiter.pid,))
    session = create_session(
        spec, bucket_seconds=5, on_chunk=chunks.append, profile="offcpu", bpftrace_path=bpftrace
    )
    assert isinstance(session, OffCpuSession)
    task = asyncio.create_task(session.run())
    try:
        await wait_for(lambda: session.dumps is not None and session.dumps.count > 0, 60)
        stdin, stdout = waiter.stdin, waiter.stdout
        assert stdin is not None and stdout is not None
        stdin.write("go\n")
        stdin.flush()
        truth_lines = await asyncio.to_thread(lambda: [stdout.readline() for _ in "ab"])
    finally:
        await session.stop()
        await asyncio.wait_for(task, 30)
    truth = {name: int(us) for name, us in (line.split() for line in truth_lines)}
    folded = total(chunks)
    assert all(chunk.profile == "offcpu" and chunk.format == "bpftrace" for chunk in chunks)
    for frame in ("wait_here", "lock_wait_here"):
        seen = weight(folded, frame)
        assert truth[frame] > 0.3 * RUN_SECONDS * 1e6, truth  # the program did block
        assert abs(seen - truth[frame]) <= 0.1 * truth[frame], (frame, seen, truth)
    sleeping = [stack for stack in folded if "wait_here;" in stack and "nanosleep" in stack]
    assert sleeping, folded.sorted_items()[:5]
    assert all("+" not in stack.split(";")[-1] for stack in folded)  # offsets dropped


async def run_failing(bpftrace: str, tmp_path: Path, spec: TargetSpec) -> str:
    session = create_session(
        spec,
        bucket_seconds=2,
        on_chunk=lambda chunk: None,
        profile="offcpu",
        bpftrace_path=bpftrace,
        fail_fast=True,
    )
    with pytest.raises(ProfilerError) as failed:
        await asyncio.wait_for(session.run(), 60)
    message = str(failed.value)
    assert "\n" not in message and message.startswith("off-CPU: ")
    return message


def wrapper(tmp_path: Path, script: str) -> str:
    path = tmp_path / "bpftrace-wrapped"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


async def test_missing_bpftrace_is_one_line(tmp_path: Path) -> None:
    spec = TargetSpec(name="self", pids=(os.getpid(),))
    message = await run_failing(str(tmp_path / "no-such-bpftrace"), tmp_path, spec)
    assert "bpftrace not found" in message and "apt-get install bpftrace" in message


async def test_no_tracefs_is_one_line(tmp_path: Path) -> None:
    """The real bpftrace, in a mount namespace of its own where tracefs is unmounted."""
    bpftrace = require_bpftrace()
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing")
    script = (
        "exec unshare -m sh -c 'umount /sys/kernel/tracing 2>/dev/null; "
        f'umount /sys/kernel/debug/tracing 2>/dev/null; exec {bpftrace} "$@"\' bpftrace "$@"'
    )
    spec = TargetSpec(name="self", pids=(os.getpid(),))
    message = await run_failing(wrapper(tmp_path, script), tmp_path, spec)
    assert "tracefs" in message and "mount -t tracefs" in message


async def test_no_permission_is_one_line(tmp_path: Path) -> None:
    """The real bpftrace run as nobody."""
    bpftrace = require_bpftrace()
    script = f'exec setpriv --reuid=65534 --regid=65534 --clear-groups {bpftrace} "$@"'
    spec = TargetSpec(name="self", pids=(os.getpid(),))
    message = await run_failing(wrapper(tmp_path, script), tmp_path, spec)
    assert "root" in message


async def test_checks_tracefs_before_starting(tmp_path: Path) -> None:
    spec = TargetSpec(name="self", pids=(os.getpid(),))
    session = create_session(
        spec,
        bucket_seconds=2,
        on_chunk=lambda chunk: None,
        profile="offcpu",
        bpftrace_path="/bin/true",
        fail_fast=True,
        tracefs=(tmp_path,),
    )
    with pytest.raises(ProfilerError, match="tracefs is not mounted"):
        await asyncio.wait_for(session.run(), 30)


def test_program_filters_the_target() -> None:
    pids = program(Resolution("pids", (12, 34)), Path("/sys/fs/cgroup"), 500, 1000)
    assert "@flamed_want[12] = 1; @flamed_want[34] = 1;" in pids
    assert "if ($us >= 500)" in pids and "interval:ms:1000" in pids
    unit = program(Resolution("cgroup", (), "system.slice/x.service"), Path("/cg"), 1, 250)
    assert 'cgroup == cgroupid("/cg/system.slice/x.service")' in unit
    everything = program(Resolution("all"), Path("/cg"), 1, 250)
    assert "if (tid != 0)" in everything and "@flamed_want" not in everything
    assert "@flamed_want" not in unit


def test_every_kind_of_target_compiles(tmp_path: Path) -> None:
    """bpftrace's dry run (-d: parse and check, attach nothing) of each program."""
    bpftrace = require_bpftrace()
    cgroup = next(p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())
    for resolution in (
        Resolution("pids", (os.getpid(),)),
        Resolution("cgroup", (), cgroup.name),
        Resolution("all"),
    ):
        text = program(resolution, Path("/sys/fs/cgroup"), 1000, 1000)
        done = subprocess.run(
            [bpftrace, "-d", "-e", text], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (resolution, done.stderr[-1000:])


def test_strange_cgroup_is_refused() -> None:
    with pytest.raises(ProfilerError, match="unusual characters"):
        program(Resolution("cgroup", (), 'a"b'), Path("/cg"), 1, 250)


def test_collapser_drops_offsets() -> None:
    collapser = OffCpuCollapser()
    collapser.feed(b"@[\n    schedule+35\n    __schedule+1576\n, \n    main+12\n, app]: 1500\n")
    collapser.feed(b"@[\n    schedule+40\n    __schedule+1576\n, \n    main+12\n, app]: 500\n")
    assert collapser.finish() == Folded({"app;main;__schedule;schedule": 2000})
    assert collapser.samples == 2 and collapser.bytes_fed > 0


def test_problems_are_listed(tmp_path: Path) -> None:
    problems = offcpu_problems(str(tmp_path / "none"), (tmp_path,), euid=1000)
    assert [problem.split(":")[1].strip().split(" ")[0] for problem in problems] == [
        "bpftrace",
        "bpftrace",
        "tracefs",
    ], problems
    assert "runs only as root" in problems[1]
    (tmp_path / "events/sched/sched_switch").mkdir(parents=True)
    assert offcpu_problems("sh", (tmp_path,), euid=0) == []
