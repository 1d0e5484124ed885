"""The py-spy backend against a real CPython 3.11 process: named functions, restarts, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collapse.errors import ProfilerError
from flamed.collector import Chunk, TargetSpec, create_session
from flamed.collector.pyspy import INSTALL, PySpySession, find_py_spy
from tests.collector.live import merged, until
from tests.conftest import DATA, run_flamed

HOT = DATA / "python" / "hot.py"
LEAF = "leaf_arithmetic (hot.py)"
PATH = ("<module> (hot.py)", "main (hot.py)", "middle_layer (hot.py)", LEAF)


@pytest.fixture
def tag() -> str:
    return f"flamedtest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pythons() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def start_python(tag: str, started: list[subprocess.Popen[bytes]]) -> int:
    """This machine's CPython (the one running the tests) on the hot program."""
    proc = subprocess.Popen([sys.executable, str(HOT), "120", tag])
    started.append(proc)
    return proc.pid


def make(spec: TargetSpec, chunks: list[Chunk], **kwargs: object) -> PySpySession:
    session = create_session(
        spec,
        bucket_seconds=1,
        on_chunk=chunks.append,
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(session, PySpySession)
    return session


def python_stacks(chunks: list[Chunk]) -> list[str]:
    return [stack for stack in merged(chunks) if stack.endswith(LEAF)]


@pytest.mark.slow
async def test_python_functions_are_named_and_a_restarted_target_followed(
    tag: str, pythons: list[subprocess.Popen[bytes]]
) -> None:
    chunks: list[Chunk] = []
    spec = TargetSpec("py", cmdline=f"hot.py 120 {tag}$", backend="py-spy", frequency=99)
    session = make(spec, chunks)
    task = asyncio.create_task(session.run())
    try:
        first = start_python(tag, pythons)
        await until(lambda: session.status.pids == (first,), "the first process")
        await until(lambda: bool(python_stacks(chunks)), "named Python frames")
        stack = python_stacks(chunks)[0].split(";")
        assert stack[0] == "python" or stack[0].startswith("python3"), stack
        assert tuple(stack[1:]) == PATH
        pythons[0].kill()
        pythons[0].wait()
        await until(lambda: session.status.pids != (first,), "the process gone")
        chunks.clear()
        second = start_python(tag, pythons)
        await until(lambda: session.status.pids == (second,), "the restarted process")
        await until(lambda: bool(python_stacks(chunks)), "named frames of the restarted one")
    finally:
        await session.stop()
        await asyncio.wait_for(task, 60)
    assert session.status.restarts.get("targets", 0) >= 1
    assert "crash" not in session.status.restarts and session.status.last_error is None
    assert session.tool_cpu_seconds > 0


async def test_a_process_that_is_not_python_is_one_line(
    pythons: list[subprocess.Popen[bytes]],
) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    pythons.append(sleeper)
    spec = TargetSpec("notpy", pids=(sleeper.pid,), backend="py-spy")
    session = make(spec, [], fail_fast=True)
    with pytest.raises(ProfilerError) as caught:
        await asyncio.wait_for(session.run(), 60)
    message = str(caught.value)
    assert message.startswith(f"py-spy on pid {sleeper.pid} exited") and "\n" not in message


async def test_a_whole_machine_target_is_refused() -> None:
    session = make(TargetSpec("all", all=True, backend="py-spy"), [], fail_fast=True)
    with pytest.raises(ProfilerError, match="samples processes"):
        await asyncio.wait_for(session.run(), 60)


def test_a_missing_py_spy_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProfilerError) as caught:
        find_py_spy(None)
    assert str(caught.value) == f"the py-spy backend needs py-spy: {INSTALL}"
    with pytest.raises(ProfilerError, match=r"py-spy not found \(/nowhere/py-spy\)"):
        find_py_spy("/nowhere/py-spy")


@pytest.mark.slow
def test_flamed_record_with_the_py_spy_backend(
    tag: str, pythons: list[subprocess.Popen[bytes]]
) -> None:
    pid = start_python(tag, pythons)
    done = run_flamed("record", "--backend", "py-spy", "-p", str(pid), "-d", "3", "-o", "-")
    assert done.returncode == 0, done.stderr
    assert ";".join(PATH).encode() in done.stdout
