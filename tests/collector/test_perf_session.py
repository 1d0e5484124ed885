"""The perf session against real perf: shape of the profile, following restarts, faults."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from pathlib import Path

import pytest

from flamed.collapse.errors import ProfilerError
from flamed.collapse.folded import Folded
from flamed.collector import Chunk, TargetSpec, create_session
from flamed.collector.perf import PerfSession
from flamed.collector.targets import pid_alive
from tests.collector.helpers import heavy_light_ratio, require_perf, weight
from tests.collector.live import (
    PROC,
    children,
    group_members,
    make,
    merged,
    perf_children,
    running,
    start,
    until,
)

pytestmark = pytest.mark.perf


async def test_session_sees_heavy_three_times_light(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(TargetSpec("burn", pids=(pid,), frequency=499), tmp_path, chunks)
    perf_pids: list[int] = []

    async def body() -> None:
        await until(lambda: session.perf_pid is not None, "perf to start")
        perf_pids.extend((session.perf_pid or 0, session.script_pid or 0))
        await until(lambda: len(chunks) >= 3, "three chunks")

    await running(session, body)
    assert session.status.state == "stopped"
    assert session.status.event in ("cycles", "cpu-clock")
    assert session.status.pids == (pid,)
    ratio = heavy_light_ratio(merged(chunks))
    assert 2.0 <= ratio <= 4.5, ratio
    for chunk in chunks:
        assert chunk.target == "burn" and chunk.format == "perf"
        assert chunk.start <= chunk.end
        assert chunk.cpu_seconds >= 0
    assert sum(chunk.samples for chunk in chunks) > 100
    assert all(chunk.bytes_folded > 0 for chunk in chunks if chunk.samples)
    assert all(chunk.start % 1 == 0 and chunk.end == chunk.start + 1 for chunk in chunks)
    assert not pid_alive(PROC, perf_pids[0]), "perf record outlived the session"
    assert not pid_alive(PROC, perf_pids[1]), "perf script outlived the session"
    assert perf_children() == []


async def test_stop_hands_out_the_bucket_being_filled(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A bucket longer than the run: its samples come out when the session stops."""
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(TargetSpec("burn", pids=(pid,), frequency=499), tmp_path, chunks,
                   bucket_seconds=3600)  # fmt: skip

    async def body() -> None:
        await asyncio.sleep(2)
        assert chunks == []

    await running(session, body)
    assert 1 <= len(chunks) <= 2, "two when the run crossed the hour"
    assert chunks[0].start % 3600 == 0 and chunks[0].end - chunks[0].start == 3600
    assert weight(merged(chunks), "heavy") > 0


async def test_process_target_follows_a_restart(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    chunks: list[Chunk] = []
    session = make(TargetSpec("byname", process="^flamedburn$", frequency=499), tmp_path, chunks)

    async def body() -> None:
        await until(lambda: session.status.state == "waiting", "waiting with no match")
        first = start(burn, processes)
        await until(lambda: session.status.pids == (first,), "the first process")
        await until(lambda: weight(merged(chunks), "heavy") > 0, "samples of the first")
        processes[0].kill()
        processes[0].wait()
        await until(lambda: session.status.state == "waiting", "waiting after it died")
        chunks.clear()
        second = start(burn, processes)
        await until(lambda: session.status.pids == (second,), "the restarted process")
        await until(lambda: weight(merged(chunks), "heavy") > 0, "samples of the restarted one")

    await running(session, body)
    assert session.status.restarts.get("targets", 0) >= 1
    assert "crash" not in session.status.restarts


@pytest.mark.parametrize("victim", ["perf record", "perf script"])
async def test_a_killed_perf_is_restarted_and_chunks_kept(
    victim: str, perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(
        TargetSpec("burn", pids=(pid,), frequency=199), tmp_path, chunks, backoff_initial=0.2
    )

    def pids() -> tuple[int | None, int | None]:
        return session.perf_pid, session.script_pid

    async def body() -> None:
        await until(lambda: len(chunks) >= 1, "a first chunk")
        old = pids()
        assert None not in old
        os.kill(old[0] if victim == "perf record" else old[1] or 0, signal.SIGKILL)
        await until(lambda: session.status.restarts.get("crash") == 1, "the restart")
        kept = len(chunks)
        await until(lambda: None not in pids() and not set(pids()) & set(old), "a new pair")
        await until(lambda: len(chunks) >= kept + 2, "chunks from the new pair")
        assert not any(pid_alive(PROC, old_pid or 0) for old_pid in old), "the old pair is gone"

    await running(session, body)
    assert session.status.restarts == {"crash": 1}
    assert session.status.chunks_dropped == {}
    assert f"{victim} was killed by signal 9" in (session.status.last_error or "")
    assert heavy_light_ratio(merged(chunks)) > 1.5


def fake_perf(tmp_path: Path, body: str) -> str:
    """A perf wrapper: ``body`` is shell run first; the real perf is $REAL."""
    real = require_perf()
    path = tmp_path / "perf"
    path.write_text(f'#!/bin/sh\nREAL={real}\nLOG={tmp_path}/calls\n{body}\nexec "$REAL" "$@"\n')
    path.chmod(0o755)
    return str(path)


async def test_perf_that_exits_1_restarts_with_backoff(tmp_path: Path) -> None:
    perf = fake_perf(
        tmp_path,
        'if [ "$1" = record ]; then date +%s.%N >> "$LOG"; echo "bad things" >&2; exit 1; fi',
    )
    chunks: list[Chunk] = []
    session = make(
        TargetSpec("all", all=True),
        tmp_path,
        chunks,
        perf_path=perf,
        backoff_initial=0.05,
        backoff_max=0.4,
        event="cpu-clock",
    )

    async def body() -> None:
        await until(lambda: session.status.restarts.get("crash", 0) >= 5, "five restarts")
        assert session.status.state == "error"
        await asyncio.sleep(1)

    await running(session, body)
    starts = [float(line) for line in (tmp_path / "calls").read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 0.05, 0.1, 0.2, 0.4, 0.4, ...: far fewer attempts than a restart loop without backoff
    assert len(starts) <= 12, starts
    assert gaps[3] > gaps[0]
    assert "exited 1: bad things" in (session.status.last_error or "")
    assert not chunks


async def test_fail_fast_raises_a_one_line_error(tmp_path: Path) -> None:
    perf = fake_perf(tmp_path, 'echo "Error: something broke" >&2; exit 1')
    session = make(
        TargetSpec("all", all=True), tmp_path, [], perf_path=perf, fail_fast=True, event="cpu-clock"
    )
    with pytest.raises(ProfilerError, match="perf record exited 1: Error: something broke"):
        await asyncio.wait_for(session.run(), 60)
    assert session.status.state == "stopped"


async def test_missing_perf_names_the_package(tmp_path: Path) -> None:
    session = make(
        TargetSpec("all", all=True),
        tmp_path,
        [],
        perf_path=str(tmp_path / "no-perf"),
        fail_fast=True,
    )
    with pytest.raises(ProfilerError, match=r"linux-perf on Debian, linux-tools-\$\(uname -r\)"):
        await asyncio.wait_for(session.run(), 60)


async def test_permission_denied_explains_paranoid(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root and setpriv to drop privileges for perf")
    pid = start(burn, processes)
    wrapper = tmp_path / "perf-as-nobody"
    wrapper.write_text(
        f'#!/bin/sh\nexec /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups {perf} "$@"\n'
    )
    wrapper.chmod(0o755)
    session = create_session(
        TargetSpec("burn", pids=(pid,)),
        bucket_seconds=1,
        on_chunk=lambda chunk: None,
        perf_path=str(wrapper),
        fail_fast=True,
        event="cpu-clock",
    )
    with pytest.raises(ProfilerError) as caught:
        await asyncio.wait_for(session.run(), 60)
    message = str(caught.value)
    assert "kernel.perf_event_paranoid is" in message
    assert "CAP_PERFMON" in message
    assert "\n" not in message


async def test_a_failing_perf_script_is_a_crash_and_restarted(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    wrapper = fake_perf(
        tmp_path,
        'if [ "$1" = script ]; then echo x >> "$LOG"; '
        'if [ "$(wc -l < "$LOG")" -eq 1 ]; then echo "corrupt input" >&2; exit 2; fi; fi',
    )
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(TargetSpec("burn", pids=(pid,), frequency=199), tmp_path, chunks,
                   perf_path=wrapper, backoff_initial=0.1, event="cpu-clock")  # fmt: skip

    async def body() -> None:
        await until(lambda: len(chunks) >= 3, "three chunks")

    await running(session, body)
    assert session.status.restarts == {"crash": 1}
    assert "perf script exited 2: corrupt input" in (session.status.last_error or "")
    assert weight(merged(chunks), "heavy") > 0


async def test_perf_past_its_memory_cap_is_restarted(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(TargetSpec("burn", pids=(pid,)), tmp_path, chunks, perf_rss_limit=1)
    pids: set[int] = set()

    async def body() -> None:
        def seen() -> bool:
            pids.add(session.perf_pid or 0)
            return session.status.restarts.get("rss", 0) >= 2 and len(chunks) >= 2

        await until(seen, "two restarts for memory")

    await running(session, body)
    assert len(pids - {0}) >= 2
    assert "crash" not in session.status.restarts
    assert weight(merged(chunks), "heavy") > 0


async def test_cancelled_session_leaves_nothing_running(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A daemon whose shutdown timed out cancels run(): perf and perf script are still reaped."""
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    wrapper = fake_perf(tmp_path, 'if [ "$1" = script ]; then sleep 30; fi')
    session = make(TargetSpec("burn", pids=(pid,)), tmp_path, chunks, perf_path=wrapper)
    task = asyncio.create_task(session.run())
    await until(lambda: any("script" in line for line in children().splitlines()), "perf script")
    script = next(line for line in children().splitlines() if "script" in line)
    group = int(script.split()[0])  # perf script leads its own process group
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert perf_children() == []
    # SIGKILLed with its group: on a loaded machine a member may take a moment to die
    await until(lambda: group_members(group) == [], "the wrapper's `sleep` to die", timeout=10)
    assert not chunks


def cgroup2_mount() -> Path:
    """Where cgroup v2 is mounted (v2-only or hybrid), or skip."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return Path(fields[1])
    pytest.skip("no cgroup v2 mount to make a test cgroup in")


async def test_unit_target_samples_its_cgroup_and_follows_restarts(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    mount = cgroup2_mount()
    unit = f"flamed-test-{os.getpid()}.service"
    folder = mount / unit
    folder.mkdir()
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f'#!/bin/sh\n[ "$5" = {unit} ] && echo /{unit}\n')
    systemctl.chmod(0o755)
    other = tmp_path / "otherburn"
    other.write_bytes(burn.read_bytes())
    other.chmod(0o755)
    outside = start(other, processes)  # burns too, outside the unit: must not be sampled
    chunks: list[Chunk] = []
    session = create_session(
        TargetSpec("svc", unit=unit, frequency=199),
        bucket_seconds=1,
        on_chunk=chunks.append,
        systemctl_path=str(systemctl),
        cgroup_root=mount.parent if mount.name == "unified" else mount,
    )
    assert isinstance(session, PerfSession)

    def enter() -> int:
        pid = start(burn, processes)
        (folder / "cgroup.procs").write_text(str(pid))
        return pid

    async def body() -> None:
        first = enter()
        await until(lambda: session.status.pids == (first,), "the unit's process")
        await until(lambda: weight(merged(chunks), "heavy") > 0, "samples from the unit")
        processes[1].kill()
        processes[1].wait()
        second = enter()  # the service restarted: same cgroup, new pid
        await until(lambda: session.status.pids == (second,), "the restarted process")
        chunks.clear()
        await until(lambda: weight(merged(chunks), "heavy") > 0, "samples after the restart")

    try:
        await running(session, body)
    finally:
        for proc in processes:
            proc.kill()
            proc.wait()
        for _ in range(50):
            try:
                folder.rmdir()
                break
            except OSError:
                await asyncio.sleep(0.1)
    assert session.status.restarts == {}, "a cgroup target needs no perf restart"
    assert outside not in session.status.pids
    comms = {stack.split(";")[0] for chunk in chunks for stack in chunk.folded}
    assert comms == {"flamedburn"}, comms


def test_script_fields_fold_like_the_default_output(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """`perf script` with only our fields and --no-inline folds as its default output does."""
    from flamed.collapse.perf import PerfCollapser
    from flamed.collector.perf import script_argv

    pid = start(burn, processes)
    data = tmp_path / "perf.data"
    subprocess.run(
        [perf, "record", "-F", "499", "-e", "cpu-clock", "-g", "-p", str(pid), "-o", str(data),
         "--", "sleep", "2"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip

    def fold(argv: list[str]) -> Folded:
        collapser = PerfCollapser()
        collapser.feed(subprocess.run(argv, capture_output=True, check=True, timeout=120).stdout)
        return collapser.finish()

    ours = fold(script_argv(perf, str(data)))
    default = fold([perf, "script", "-i", str(data)])
    assert weight(ours, "heavy") > 0
    assert ours == default


async def test_a_refused_perf_script_reads_paranoid_from_the_sessions_proc(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """The explanation reads perf_event_paranoid under the session's /proc (it read "/"'s)."""
    wrapper = fake_perf(
        tmp_path, 'if [ "$1" = script ]; then echo "open failed: Permission denied" >&2; exit 1; fi'
    )
    pid = start(burn, processes)
    session = make(TargetSpec("burn", pids=(pid,)), tmp_path, [], perf_path=wrapper)

    async def body() -> None:
        await until(lambda: session.status.restarts.get("crash", 0) >= 1, "a refused script")

    await running(session, body)
    level = (PROC / "sys/kernel/perf_event_paranoid").read_text().strip()
    assert f"kernel.perf_event_paranoid is {level} " in (session.status.last_error or "")
