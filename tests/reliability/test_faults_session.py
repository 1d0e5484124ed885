"""Faults inside one perf session (issue 9, cases 5 and 6), with real perf.

Case 5 puts a stand-in ``perf script`` that never reads and never writes (and
leaves a grandchild in its process group) in front of the real perf; case 6
lowers the perf RSS cap below what perf needs. Figures are recorded, never
asserted.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from flamed.collector import Chunk, TargetSpec, create_session
from flamed.collector.perf import PerfSession, resident_bytes
from tests.collector.helpers import build_burn, require_perf, weight
from tests.collector.live import until
from tests.reliability.faults_support import PROC, burn_name, figure, stat_fields

pytestmark = pytest.mark.perf


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_perf()
    proc = subprocess.Popen([str(build_burn(tmp_path, burn_name())), "120"])
    yield proc
    proc.kill()
    proc.wait()


def make(tmp_path: Path, pid: int, chunks: list[Chunk], **kwargs: object) -> PerfSession:
    session = create_session(
        TargetSpec("burn", pids=(pid,), frequency=199),
        bucket_seconds=1,
        on_chunk=chunks.append,
        event="cpu-clock",
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(session, PerfSession)
    return session


async def running(session: PerfSession, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(session.run())
    try:
        await body()
    finally:
        await session.stop()
        await asyncio.wait_for(task, 60)


def alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


# -- case 5 ----------------------------------------------------------------------------------

HANGS = 2


def hanging_script(tmp_path: Path) -> str:
    """perf, except that the first HANGS ``perf script`` runs never read, write or end.

    Each hung run records its pid and a grandchild's (a ``sleep`` in the same
    process group) in ``hung/``.
    """
    real = require_perf()
    hung = tmp_path / "hung"
    hung.mkdir()
    path = tmp_path / "perf"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = script ] && [ "$(ls {hung} | wc -l)" -lt {2 * HANGS} ]; then\n'
        f"  sleep 100000 & echo $! > {hung}/child.$$\n"
        f"  echo $$ > {hung}/main.$$\n"
        "  exec sleep 100000\n"
        "fi\n"
        f'exec {real} "$@"\n'
    )
    path.chmod(0o755)
    return str(path)


async def test_a_perf_script_that_never_writes_is_replaced_with_its_group(
    tmp_path: Path, burner: subprocess.Popen[bytes]
) -> None:
    chunks: list[Chunk] = []
    perf = hanging_script(tmp_path)
    session = make(tmp_path, burner.pid, chunks, perf_path=perf, stall_timeout=3)
    started = time.monotonic()

    async def body() -> None:
        restarts = session.status.restarts
        await until(lambda: restarts.get("stalled", 0) >= HANGS, "the hung scripts replaced")
        figure("5", "seconds to replace 2 hung perf scripts (stall 3 s)",
               f"{time.monotonic() - started:.1f}")  # fmt: skip
        await until(lambda: len(chunks) >= 2, "buckets after the hung scripts")

    await running(session, body)
    recorded = [int(path.read_text()) for path in (tmp_path / "hung").iterdir()]
    assert len(recorded) == 2 * HANGS
    leaked = [pid for pid in recorded if alive(pid)]
    figure("5", "pids leaked by hung perf script runs", len(leaked))
    assert leaked == []
    assert session.status.restarts == {"stalled": HANGS}
    assert sum(weight(chunk.folded, "heavy") for chunk in chunks) > 0


# -- case 6 ----------------------------------------------------------------------------------


async def sampled_rss(session: PerfSession, chunks: list[Chunk], buckets: int) -> int:
    """Run the session for ``buckets`` chunks; the largest perf RSS seen meanwhile."""
    peak = 0

    async def body() -> None:
        nonlocal peak
        deadline = time.monotonic() + 90
        while len(chunks) < buckets:
            assert time.monotonic() < deadline, "no chunks"
            if session.perf_pid is not None:
                peak = max(peak, resident_bytes(PROC, session.perf_pid))
            await asyncio.sleep(0.02)

    await running(session, body)
    return peak


async def test_perf_over_its_rss_cap_is_restarted_and_counted(
    tmp_path: Path, burner: subprocess.Popen[bytes]
) -> None:
    unlimited: list[Chunk] = []
    control = make(tmp_path / "a", burner.pid, unlimited)  # the default cap: 512 MiB
    normal = await sampled_rss(control, unlimited, 4)
    figure(
        "6", "perf RSS under the default 512 MiB cap (max over 4 buckets)", f"{normal >> 10} KiB"
    )
    assert "rss" not in control.status.restarts and normal > 0

    cap = normal // 2
    capped: list[Chunk] = []
    session = make(tmp_path / "b", burner.pid, capped, perf_rss_limit=cap)
    peak = await sampled_rss(session, capped, 4)
    figure("6", f"max perf RSS with a cap of {cap >> 10} KiB", f"{peak >> 10} KiB")
    restarts = session.status.restarts.get("rss", 0)
    figure("6", "rss restarts in 4 buckets", restarts)
    assert restarts >= 2
    assert sum(weight(chunk.folded, "heavy") for chunk in capped) > 0, "restarts lost the samples"
