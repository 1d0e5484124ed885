"""Running a real perf session in a test: start it, wait for a condition, look at children."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from flamed.collapse.folded import Folded
from flamed.collector import Chunk, TargetSpec, create_session
from flamed.collector.perf import PerfSession
from flamed.collector.procfs import resident_bytes

PROC = Path("/proc")


def start(binary: Path, started: list[subprocess.Popen[bytes]], seconds: int = 60) -> int:
    proc = subprocess.Popen([str(binary), str(seconds)])
    started.append(proc)
    return proc.pid


def make(spec: TargetSpec, tmp_path: Path, chunks: list[Chunk], **kwargs: object) -> PerfSession:
    session = create_session(
        spec,
        bucket_seconds=float(kwargs.pop("bucket_seconds", 1)),  # type: ignore[arg-type]
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


class Resident(threading.Thread):
    """The peak resident memory (bytes) of some processes, every 50 ms."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], resident_bytes(PROC, pid))
