"""The DTrace session against a fake ``dtrace`` that checks its arguments and replays recordings."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flamed.collapse.dtrace import DTraceCollapser
from flamed.collapse.errors import ProfilerError, UsageError
from flamed.collapse.folded import Folded
from flamed.collector import Chunk, TargetSpec, create_session
from flamed.collector.dtrace import DTraceSession
from flamed.collector.sessions import choose_backend
from tests.conftest import DATA

REPLAY = DATA / "dtrace-replay"

FAKE_DTRACE = r"""
import json, os, re, signal, sys, time

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
if len(args) != 4 or args[:3] != ["-x", "ustackframes=100", "-n"]:
    print("dtrace: usage error", file=sys.stderr)
    sys.exit(2)
found = re.fullmatch(
    r'profile-(\d+)(?: /(.+)/)? \{ @\[ustack\(\)\] = count\(\); \} '
    r'tick-(\d+)ms \{ printa\(@\); trunc\(@\); printf\("(.*)%d\\n", walltimestamp\); \}',
    args[3],
)
if found is None:
    print("dtrace: invalid probe specifier " + args[3], file=sys.stderr)
    sys.exit(1)
tick = int(found.group(3)) / 1000
marker = found.group(4).replace("\\n", "\n")
folder = os.environ["FAKE_REPLAY"]
names = sorted(n for n in os.listdir(folder) if n.endswith(".txt"))
dumps = [open(os.path.join(folder, n)).read() for n in names]
exit_after = int(os.environ.get("FAKE_EXIT_AFTER", "0"))
stopped = False

def stop(signum, frame):
    global stopped
    stopped = True

signal.signal(signal.SIGINT, stop)
out = sys.stdout
out.write("CPU     ID                    FUNCTION:NAME\n")
out.flush()
shown = 0
while True:
    deadline = time.monotonic() + tick
    while not stopped and time.monotonic() < deadline:
        time.sleep(0.02)
    name = names[shown % len(dumps)]
    dump = dumps[shown % len(dumps)]
    stamp = time.time_ns()
    with open(os.environ["FAKE_LOG"] + ".dumps", "a") as log:
        log.write(json.dumps([name, None if stopped else stamp]) + "\n")
    if stopped:  # dtrace prints what the aggregation holds when it exits
        out.write("\n" + dump)
        out.flush()
        sys.exit(0)
    out.write("  0  64091                     :tick-%dms \n" % (tick * 1000) + dump + marker)
    out.write("%d\n" % stamp)
    out.flush()
    shown += 1
    if exit_after and shown >= exit_after:
        print("dtrace: processing aborted: Abort due to systemic unresponsiveness", file=sys.stderr)
        sys.exit(1)
"""


def fake_dtrace(tmp_path: Path, exit_after: int = 0) -> str:
    path = tmp_path / "dtrace"
    path.write_text(f"#!{sys.executable}\n{FAKE_DTRACE}")
    path.chmod(0o755)
    os.environ["FAKE_LOG"] = str(tmp_path / "calls")
    os.environ["FAKE_REPLAY"] = str(REPLAY)
    os.environ["FAKE_EXIT_AFTER"] = str(exit_after)
    return str(path)


@pytest.fixture(autouse=True)
def _clean_env() -> object:
    saved = {key: os.environ.get(key) for key in ("FAKE_LOG", "FAKE_REPLAY", "FAKE_EXIT_AFTER")}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "calls").read_text().splitlines()]


def dumps(tmp_path: Path) -> list[tuple[str, float | None]]:
    """The dumps the fake printed: file name, and its time (None for the one at exit)."""
    lines = (tmp_path / "calls.dumps").read_text().splitlines()
    return [(name, None if ns is None else ns / 1e9) for name, ns in map(json.loads, lines)]


def recorded(name: str) -> Folded:
    collapser = DTraceCollapser()
    collapser.feed((REPLAY / name).read_bytes())
    return collapser.finish()


def make(spec: TargetSpec, tmp_path: Path, chunks: list[Chunk], **kwargs: object) -> DTraceSession:
    session = create_session(
        spec,
        bucket_seconds=1,
        on_chunk=chunks.append,
        dtrace_path=fake_dtrace(tmp_path, int(kwargs.pop("exit_after", 0))),  # type: ignore[call-overload]
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(session, DTraceSession)
    return session


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def test_pid_target_replays_into_chunks(tmp_path: Path) -> None:
    chunks: list[Chunk] = []
    pid = os.getpid()
    session = make(TargetSpec("me", pids=(pid,), backend="dtrace", frequency=97), tmp_path, chunks)
    task = asyncio.create_task(session.run())
    await until(lambda: len(chunks) >= 3, "three buckets")
    assert session.status.state == "running"
    await session.stop()
    await asyncio.wait_for(task, 30)
    program = calls(tmp_path)[0][3]
    assert program.startswith(f"profile-97 /pid == {pid}/ {{ @[ustack()] = count(); }} tick-250ms")
    assert program.endswith('printf("\\n==flamed-dump-end== %d\\n", walltimestamp); }')
    printed = dumps(tmp_path)
    assert printed[-1][1] is None, "the aggregation printed at exit"
    everything = Folded()
    for name, _ in printed:
        everything.update(recorded(name))
    got: dict[float, Folded] = {}
    for chunk in chunks:
        assert chunk.format == "dtrace" and chunk.target == "me"
        assert chunk.start % 1 == 0 and chunk.end == chunk.start + 1, "aligned 1 s buckets"
        assert chunk.samples == chunk.folded.total()
        got.setdefault(chunk.start, Folded()).update(chunk.folded)
    merged = Folded()
    for folded in got.values():
        merged.update(folded)
    assert merged == everything, "every dump once"
    expected: dict[float, Folded] = {}
    for name, stamp in printed[:-1]:  # each dump in the bucket of its middle (0.125 s before)
        expected.setdefault(math.floor(stamp - 0.125), Folded()).update(recorded(name))
    for start in sorted(got)[:-1]:  # the last one also holds the dump printed at exit
        assert got[start] == expected.get(start, Folded()), start
    assert session.status.backend == "dtrace" and session.status.event == "profile-97"
    assert session.status.state == "stopped"
    assert session.status.pids == (pid,)


async def test_plain_process_name_becomes_execname(tmp_path: Path) -> None:
    chunks: list[Chunk] = []
    spec = TargetSpec("nginx", process="^nginx$", backend="dtrace")
    session = make(spec, tmp_path, chunks)
    task = asyncio.create_task(session.run())
    await until(lambda: len(chunks) >= 1, "a dump")
    await session.stop()
    await asyncio.wait_for(task, 30)
    assert '/execname == "nginx"/' in calls(tmp_path)[0][3]


async def test_dying_dtrace_is_restarted_and_chunks_kept(tmp_path: Path) -> None:
    chunks: list[Chunk] = []
    spec = TargetSpec("all", all=True, backend="dtrace")
    session = make(spec, tmp_path, chunks, exit_after=1, backoff_initial=0.1)
    task = asyncio.create_task(session.run())
    await until(lambda: session.status.restarts.get("crash", 0) >= 2, "two restarts")
    await session.stop()
    await asyncio.wait_for(task, 30)
    assert len(dumps(tmp_path)) >= 2, "each dtrace printed a dump before dying"
    merged = Folded()
    for chunk in chunks:
        merged.update(chunk.folded)
    assert merged.counts == {k: v * len(dumps(tmp_path)) for k, v in recorded("burn-1.txt").items()}
    assert "systemic unresponsiveness" in (session.status.last_error or "")
    assert " /" not in calls(tmp_path)[0][3], "the whole machine has no predicate"


async def test_fail_fast_dtrace_missing(tmp_path: Path) -> None:
    session = create_session(
        TargetSpec("all", all=True, backend="dtrace"),
        bucket_seconds=1,
        on_chunk=lambda chunk: None,
        dtrace_path=str(tmp_path / "none"),
        fail_fast=True,
    )
    with pytest.raises(ProfilerError, match="dtrace not found"):
        await asyncio.wait_for(session.run(), 30)


def test_dtrace_refuses_what_it_cannot_select(tmp_path: Path) -> None:
    for spec in (
        TargetSpec("a", cmdline="java", backend="dtrace"),
        TargetSpec("b", unit="nginx.service", backend="dtrace"),
        TargetSpec("c", process="ng.*x", backend="dtrace"),
    ):
        with pytest.raises(UsageError, match="dtrace backend"):
            create_session(spec, bucket_seconds=1, on_chunk=lambda c: None)


def test_backend_follows_platform() -> None:
    spec = TargetSpec("x", all=True)
    assert choose_backend(spec, "linux") == "perf"
    assert choose_backend(spec, "darwin") == "dtrace"
    assert choose_backend(TargetSpec("y", all=True, backend="perf"), "darwin") == "perf"
