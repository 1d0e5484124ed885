"""flamed's HotSpot attach: a real JDK 17 JVM asked to write its perf map, here and in its
own pid and mount namespace; what is not a JVM's is never signalled or connected to."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collector.attach import AttachError, catches_sigquit, jvm_command
from tests.collector.jit import start_java, stop
from tests.collector.test_jit_session import UNSHARE, only_child
from tests.collector.test_perfmap import fake_proc

PROC = Path("/proc")


@pytest.fixture(params=["host", "unshare"])
def jvm(request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    """(the JVM's pid here, where its perf map is written). Its classes are in /dev/shm:
    the namespace's /tmp is a new, empty one."""
    prefix = UNSHARE if request.param == "unshare" else ()
    classes = Path(tempfile.mkdtemp(prefix="flamedtest-", dir="/dev/shm"))
    try:
        proc = start_java(classes, prefix=prefix)
    finally:
        shutil.rmtree(classes)  # loaded by now
    try:
        pid = only_child(proc.pid) if prefix else proc.pid
        nspid = 1 if prefix else pid
        yield pid, PROC / str(pid) / "root" / "tmp" / f"perf-{nspid}.map"
    finally:
        stop(proc)


@pytest.mark.slow
async def test_a_jvm_writes_its_map_when_asked(jvm: tuple[int, Path]) -> None:
    pid, map_path = jvm
    assert not map_path.exists()
    await jvm_command(PROC, pid, "Compiler.perfmap")
    assert map_path.read_bytes().startswith(b"0x")  # START SIZE NAME lines
    await jvm_command(PROC, pid, "Compiler.perfmap")  # through the socket already open
    with pytest.raises(AttachError, match="the JVM answered: "):
        await jvm_command(PROC, pid, "No.such.command")


async def test_a_process_that_would_die_of_sigquit_is_not_signalled() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not catches_sigquit(PROC, sleeper.pid)
        with pytest.raises(AttachError, match="does not catch SIGQUIT"):
            await jvm_command(PROC, sleeper.pid, "Compiler.perfmap")
        await asyncio.sleep(0.1)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_handler_for_sigquit_is_seen() -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGQUIT, print); print(); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"\n"
        assert catches_sigquit(PROC, child.pid)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()  # type: ignore[union-attr]


async def test_a_file_posing_as_the_socket_is_not_connected_to(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, os.getpid(), 7)
    (proc / str(os.getpid()) / "root" / "tmp" / ".java_pid7").write_text("not a socket")
    with pytest.raises(AttachError, match="is not the JVM's socket"):
        await jvm_command(proc, os.getpid(), "Compiler.perfmap")


async def test_a_symlinked_tmp_is_refused(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, os.getpid(), 7)
    tmp = proc / str(os.getpid()) / "root" / "tmp"
    tmp.rmdir()
    tmp.symlink_to("/tmp")
    with pytest.raises(AttachError, match="not a folder"):
        await jvm_command(proc, os.getpid(), "Compiler.perfmap")
