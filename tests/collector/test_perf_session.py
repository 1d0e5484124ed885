"""The perf session against real perf: shape of the profile, following restarts, faults."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from flamed.collapse.errors import ProfilerError
from flamed.collapse.folded import Folded
from flamed.collector import Chunk, TargetSpec, create_session
from flamed.collector.perf import PerfSession
from flamed.collector.targets import pid_alive
from tests.collector.helpers import build_burn, heavy_light_ratio, require_perf, weight

pytestmark = pytest.mark.perf

PROC = Path("/proc")


@pytest.fixture
def perf() -> str:
    return require_perf()


@pytest.fixture
def burn(tmp_path: Path) -> Path:
    return build_burn(tmp_path)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def start(binary: Path, started: list[subprocess.Popen[bytes]], seconds: int = 60) -> int:
    proc = subprocess.Popen([str(binary), str(seconds)])
    started.append(proc)
    return proc.pid


def make(spec: TargetSpec, tmp_path: Path, chunks: list[Chunk], **kwargs: object) -> PerfSession:
    session = create_session(
        spec,
        bucket_seconds=1,
        spool_dir=tmp_path / "spool",
        on_chunk=chunks.append,
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(session, PerfSession)
    return session


async def until(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    """Poll ``condition`` (a deadline against hangs, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}: {children()}"
        await asyncio.sleep(0.05)


def children() -> str:
    done = subprocess.run(
        ["ps", "-ww", "-o", "pid,stat,etime,time,args", "--ppid", str(os.getpid())],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


async def running(session: PerfSession, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(session.run())
    try:
        await body()
    finally:
        await session.stop()
        await asyncio.wait_for(task, 60)


def merged(chunks: list[Chunk]) -> Folded:
    total = Folded()
    for chunk in chunks:
        total.update(chunk.folded)
    return total


def group_members(group: int) -> list[tuple[int, str]]:
    """Live processes (pid, state) of a process group; zombies left to init do not count."""
    found = []
    for name in os.listdir(PROC):
        try:
            stat = (PROC / name / "stat").read_text() if name.isdigit() else ""
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields and int(fields[2]) == group and fields[0] != "Z":
            found.append((int(name), fields[0]))
    return found


def perf_children() -> list[int]:
    """Our child processes that are perf (record or script)."""
    found = []
    me = str(os.getpid())
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            stat = (PROC / name / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[1] == me and "perf" in stat[: stat.rfind(")")]:
            found.append(int(name))
    return found


async def test_session_sees_heavy_three_times_light(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(TargetSpec("burn", pids=(pid,), frequency=499), tmp_path, chunks)
    perf_pids: list[int] = []

    async def body() -> None:
        await until(lambda: session.perf_pid is not None, "perf to start")
        perf_pids.append(session.perf_pid or 0)
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
    assert not pid_alive(PROC, perf_pids[0]), "perf record outlived the session"
    assert perf_children() == []
    assert list((tmp_path / "spool" / "burn").iterdir()) == [], "spool not emptied"


async def test_stop_folds_perfs_last_file(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A bucket longer than the run: the only data is the file perf writes on SIGINT."""
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = create_session(
        TargetSpec("burn", pids=(pid,), frequency=499),
        bucket_seconds=3600,
        spool_dir=tmp_path / "spool",
        on_chunk=chunks.append,
    )

    async def body() -> None:
        await asyncio.sleep(2)

    await running(session, body)  # type: ignore[arg-type]
    assert len(chunks) == 1
    assert weight(chunks[0].folded, "heavy") > 0


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


async def test_killed_perf_is_restarted_and_chunks_kept(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(
        TargetSpec("burn", pids=(pid,), frequency=199), tmp_path, chunks, backoff_initial=0.2
    )

    async def body() -> None:
        await until(lambda: len(chunks) >= 1, "a first chunk")
        victim = session.perf_pid
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        await until(lambda: session.status.restarts.get("crash") == 1, "the restart")
        kept = len(chunks)
        await until(lambda: session.perf_pid not in (None, victim), "a new perf")
        await until(lambda: len(chunks) >= kept + 2, "chunks from the new perf")

    await running(session, body)
    assert session.status.restarts == {"crash": 1}
    assert set(session.status.chunks_dropped) <= {"unfinished"}
    assert "signal 9" in (session.status.last_error or "")
    assert list((tmp_path / "spool" / "burn").iterdir()) == [], "spool not emptied"
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
    spool = Path(os.environ.get("TMPDIR", "/tmp")) / f"flamed-test-spool-{os.getpid()}"
    spool.mkdir(mode=0o777, exist_ok=True)
    spool.chmod(0o777)
    try:
        session = create_session(
            TargetSpec("burn", pids=(pid,)),
            bucket_seconds=1,
            spool_dir=spool,
            on_chunk=lambda chunk: None,
            perf_path=str(wrapper),
            fail_fast=True,
            event="cpu-clock",
        )
        (spool / "burn").mkdir(mode=0o777)
        (spool / "burn").chmod(0o777)
        with pytest.raises(ProfilerError) as caught:
            await asyncio.wait_for(session.run(), 60)
    finally:
        subprocess.run(["rm", "-rf", str(spool)], check=False)
    message = str(caught.value)
    assert "kernel.perf_event_paranoid is" in message
    assert "CAP_PERFMON" in message
    assert "\n" not in message


async def test_failing_perf_script_drops_one_chunk(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    wrapper = fake_perf(
        tmp_path,
        'if [ "$1" = script ]; then echo x >> "$LOG"; '
        'if [ "$(wc -l < "$LOG")" -eq 2 ]; then echo "corrupt file" >&2; exit 2; fi; fi',
    )
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(
        TargetSpec("burn", pids=(pid,), frequency=199), tmp_path, chunks, perf_path=wrapper
    )

    async def body() -> None:
        await until(lambda: len(chunks) >= 3, "three chunks")

    await running(session, body)
    assert session.status.chunks_dropped == {"script_failed": 1}
    assert "perf script exited 2: corrupt file" in (session.status.last_error or "")
    assert session.status.restarts == {}


async def test_backlog_is_bounded(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    wrapper = fake_perf(tmp_path, 'if [ "$1" = script ]; then sleep 2.5; fi')
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(
        TargetSpec("burn", pids=(pid,), frequency=99),
        tmp_path,
        chunks,
        perf_path=wrapper,
        max_backlog=1,
    )
    spool = tmp_path / "spool" / "burn"
    most = 0

    async def body() -> None:
        nonlocal most
        deadline = time.monotonic() + 60
        while session.status.chunks_dropped.get("backlog", 0) < 2:
            most = max(most, len(list(spool.glob("perf.data.*"))))
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)

    await running(session, body)
    assert chunks, "the files not dropped are folded"
    assert most <= 3  # the queued one, the one being folded, and one just rotated
    assert list(spool.iterdir()) == []


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
    assert group_members(group) == [], "the wrapper's `sleep` outlived it"
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
        spool_dir=tmp_path / "spool",
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

    ours = fold(script_argv(perf, data))
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
        await until(lambda: "script_failed" in session.status.chunks_dropped, "a refused script")

    await running(session, body)
    level = (PROC / "sys/kernel/perf_event_paranoid").read_text().strip()
    assert f"kernel.perf_event_paranoid is {level} " in (session.status.last_error or "")
