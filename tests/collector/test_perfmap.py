"""flamed reads JIT perf maps itself: through /proc/PID/root, bounded, hostile-input safe.

Most tests use a real process (a ``sleep``) and a real map in /tmp named for its pid,
read through the real /proc; those that need a /proc the machine cannot give (another
pid namespace's NSpid, a start time that changes) use a folder laid out like /proc.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collector.perfmap import READ_CHUNK, READ_PER_LOOK, PerfMaps

MAP_LINES = (
    b"7f0000001000 100 JS:*first /app/a.js:1\n"
    b"0x00007f0000002000 0x0000000000000200 double Hot.work(int)\n"
    b"7f0000003000 40 LazyCompile:~with spaces in it /app/b.js:3\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def target() -> Iterator[tuple[int, Path]]:
    """A real process, and the path of its perf map in this machine's /tmp."""
    child = subprocess.Popen(["sleep", "120"])
    path = Path(f"/tmp/perf-{child.pid}.map")
    try:
        yield child.pid, path
    finally:
        child.kill()
        child.wait()
        if path.is_symlink() or path.exists():
            path.unlink()


def test_names_come_from_bare_and_0x_prefixed_lines(target: tuple[int, Path]) -> None:
    pid, path = target
    path.write_bytes(MAP_LINES)
    maps = PerfMaps()
    assert maps.lookup(pid, 0x7F0000001000) == "JS:*first /app/a.js:1"
    assert maps.lookup(pid, 0x7F00000010FF) == "JS:*first /app/a.js:1"
    assert maps.lookup(pid, 0x7F0000001100) is None  # past its end
    assert maps.lookup(pid, 0x7F0000002010) == "double Hot.work(int)"
    assert maps.lookup(pid, 0x7F000000303F) == "LazyCompile:~with spaces in it /app/b.js:3"
    assert maps.stats.lines == 3 and maps.stats.malformed == 0


def test_a_map_that_grows_is_read_again_from_where_it_stopped(target: tuple[int, Path]) -> None:
    """What the JIT appends after sampling started is named, once a second has passed."""
    pid, path = target
    path.write_bytes(MAP_LINES)
    clock = Clock()
    maps = PerfMaps(clock=clock)
    assert maps.lookup(pid, 0x7F0000009000) is None
    with path.open("ab") as out:
        out.write(b"7f0000009000 80 JS:*compiledLater /app/a.js:9\n")
        out.write(b"7f0000001000 100 JS:*first (recompiled) /app/a.js:1\n")
        out.write(b"7f000000a000 10 JS:*half a li")  # still being written
    assert maps.lookup(pid, 0x7F0000009000) is None  # checked at most once a second
    clock.now += 1.0
    assert maps.lookup(pid, 0x7F0000009000) == "JS:*compiledLater /app/a.js:9"
    assert maps.lookup(pid, 0x7F0000001000) == "JS:*first (recompiled) /app/a.js:1"  # newer wins
    read = maps.stats.bytes_read
    with path.open("ab") as out:
        out.write(b"ne\n")
    clock.now += 1.0
    assert maps.lookup(pid, 0x7F000000A000) == "JS:*half a line"
    assert maps.stats.bytes_read - read == len(b"7f000000a000 10 JS:*half a line\n")


def test_a_rewritten_map_is_read_again_whole(target: tuple[int, Path]) -> None:
    """jcmd Compiler.perfmap rewrites the file: old entries go, even if it grew."""
    pid, path = target
    path.write_bytes(MAP_LINES)
    clock = Clock()
    maps = PerfMaps(clock=clock)
    assert maps.lookup(pid, 0x7F0000001000) == "JS:*first /app/a.js:1"
    path.write_bytes(b"0x7f0000004000 0x100 void Moved.here()\n" + MAP_LINES[40:] * 2)
    clock.now += 1.0
    assert maps.lookup(pid, 0x7F0000001000) is None
    assert maps.lookup(pid, 0x7F0000004000) == "void Moved.here()"


def test_many_reads_of_a_growing_map_are_merged_keeping_the_newest(
    target: tuple[int, Path],
) -> None:
    pid, path = target
    path.write_bytes(b"")
    clock = Clock()
    maps = PerfMaps(clock=clock)
    for round_ in range(40):
        with path.open("ab") as out:
            out.write(b"7f0000001000 100 version%d\n" % round_)
            out.write(b"7f00000%05x 10 only%d\n" % (0x10000 + round_ * 0x100, round_))
        clock.now += 1.0
        assert maps.lookup(pid, 0x7F0000001000) == f"version{round_}"
    for round_ in range(40):
        assert maps.lookup(pid, 0x7F0000010000 + round_ * 0x100) == f"only{round_}"


def test_kept_after_the_process_exits_until_no_longer_asked_for(
    target: tuple[int, Path],
) -> None:
    pid, path = target
    path.write_bytes(MAP_LINES)
    clock = Clock()
    maps = PerfMaps(clock=clock, keep_seconds=30.0)
    assert maps.lookup(pid, 0x7F0000001000) == "JS:*first /app/a.js:1"
    subprocess.run(["kill", str(pid)], check=True)
    os.waitpid(pid, 0)
    path.unlink()
    clock.now += 5.0
    assert maps.lookup(pid, 0x7F0000001000) == "JS:*first /app/a.js:1"  # its last samples
    maps.prune()
    clock.now += 29.0
    maps.prune()
    assert maps.lookup(pid, 0x7F0000001000) == "JS:*first /app/a.js:1"
    clock.now += 31.0
    maps.prune()
    assert maps.lookup(pid, 0x7F0000001000) is None and maps.held_bytes == 0


def test_the_map_of_a_process_gone_unseen_is_dropped(target: tuple[int, Path]) -> None:
    """No lookup saw it exit (its frames were no longer sampled): pruning finds it gone."""
    pid, path = target
    path.write_bytes(MAP_LINES)
    clock = Clock()
    maps = PerfMaps(clock=clock, keep_seconds=30.0)
    assert maps.lookup(pid, 0x7F0000001000) == "JS:*first /app/a.js:1"
    clock.now += 31.0
    maps.prune()
    assert maps.held_bytes > 0  # idle, but alive
    subprocess.run(["kill", str(pid)], check=True)
    os.waitpid(pid, 0)
    maps.prune()
    assert maps.held_bytes == 0


# -- another pid namespace and a new process under an old pid: a folder laid out as /proc


def fake_proc(tmp_path: Path, pid: int, nspid: int, started: str = "4242") -> Path:
    proc = tmp_path / "proc"
    folder = proc / str(pid)
    (folder / "root" / "tmp").mkdir(parents=True, exist_ok=True)
    nspids = f"{pid}\t{nspid}" if nspid != pid else str(pid)
    (folder / "status").write_text(f"Name:\tnode\nUid:\t0\t0\t0\t0\nNSpid:\t{nspids}\n")
    fields = ["S"] + ["0"] * 18 + [started] + ["0"] * 20
    (folder / "stat").write_text(f"{pid} (node) {' '.join(fields)}\n")
    return proc


def test_the_map_is_named_by_the_pid_the_process_sees(tmp_path: Path) -> None:
    """In its own pid namespace the process is, say, pid 7: it writes /tmp/perf-7.map."""
    proc = fake_proc(tmp_path, 4321, 7)
    (proc / "4321/root/tmp/perf-4321.map").write_bytes(b"1000 10 wrong\n")
    (proc / "4321/root/tmp/perf-7.map").write_bytes(b"1000 10 right\n")
    assert PerfMaps(proc).lookup(4321, 0x1000) == "right"


def test_a_new_process_under_the_same_pid_starts_a_new_map(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 4321, 4321)
    (proc / "4321/root/tmp/perf-4321.map").write_bytes(b"1000 10 old\n")
    clock = Clock()
    maps = PerfMaps(proc, clock=clock)
    assert maps.lookup(4321, 0x1000) == "old"
    fake_proc(tmp_path, 4321, 4321, started="9999")
    (proc / "4321/root/tmp/perf-4321.map").write_bytes(b"2000 10 new\n")
    clock.now += 1.0
    assert maps.lookup(4321, 0x1000) is None
    assert maps.lookup(4321, 0x2000) == "new"


def test_a_symlinked_tmp_in_the_target_root_is_not_followed(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 4321, 4321)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "perf-4321.map").write_bytes(b"1000 10 secret\n")
    (proc / "4321/root/tmp").rmdir()
    (proc / "4321/root/tmp").symlink_to(outside)
    maps = PerfMaps(proc)
    assert maps.lookup(4321, 0x1000) is None
    assert maps.stats.refused == {"symlink": 1} and maps.stats.bytes_read == 0


# -- hostile maps ---------------------------------------------------------------


def test_a_symlink_to_etc_shadow_is_refused(target: tuple[int, Path]) -> None:
    pid, path = target
    path.symlink_to("/etc/shadow")
    maps = PerfMaps()
    assert maps.lookup(pid, 0x1000) is None
    assert maps.stats.refused == {"symlink": 1} and maps.stats.bytes_read == 0


def test_a_fifo_is_refused_without_hanging(target: tuple[int, Path]) -> None:
    pid, path = target
    os.mkfifo(path)
    maps = PerfMaps()
    assert maps.lookup(pid, 0x1000) is None  # pytest-timeout would catch a hang
    assert maps.stats.refused == {"not_regular": 1}


def test_a_map_owned_by_another_user_is_refused(target: tuple[int, Path]) -> None:
    """Anyone may create /tmp/perf-PID.map for a pid they guess; as perf does, flamed reads
    it only if it belongs to the process's user or root."""
    pid, path = target
    path.write_bytes(MAP_LINES)
    os.chown(path, 12345, 12345)
    maps = PerfMaps()
    assert maps.lookup(pid, 0x7F0000001000) is None
    assert maps.stats.refused == {"owner": 1}


def test_binary_garbage_is_counted_and_the_good_lines_kept(
    target: tuple[int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    pid, path = target
    garbage = bytes(range(256)) * 64 + b"\n" + b"zz 10 name\n" + b"10 zz name\n" + b"10 10\n"
    garbage += b"x" * 10000 + b"\n" + b"1 0 empty\n" + b"f" * 17 + b" 10 long address\n"
    path.write_bytes(garbage + MAP_LINES + os.urandom(1 << 16) + b"\n")
    with caplog.at_level(logging.WARNING, "flamed.collector"):
        maps = PerfMaps()
        assert maps.lookup(pid, 0x7F0000002000) == "double Hot.work(int)"
    assert maps.stats.malformed >= 7
    assert maps.stats.lines == maps.stats.malformed + 3
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "malformed lines skipped" in warnings[0]


def test_a_1_gb_map_is_cut_at_the_bound_in_bounded_memory(target: tuple[int, Path]) -> None:
    """A sparse 1 GB file: real lines, then a hole of zero bytes. It is read up to the
    bound, the lines before it are named, memory stays within a small multiple of it."""
    pid, path = target
    lines = b"".join(b"%x 10 function_number_%d\n" % (0x100000 + i * 16, i) for i in range(100_000))
    path.write_bytes(lines)
    os.truncate(path, 1 << 30)
    bound = 16 << 20
    clock = Clock()
    tracemalloc.start()
    try:
        maps = PerfMaps(max_bytes=bound, clock=clock)
        assert maps.lookup(pid, 0x100000 + 99_999 * 16) == "function_number_99999"
        assert maps.stats.bytes_read <= READ_PER_LOOK  # a look reads a bounded amount
        for _ in range(3):  # the next looks read on, up to the bound
            clock.now += 1.0
            assert maps.lookup(pid, 0x100000) == "function_number_0"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert maps.stats.truncated >= 1
    assert maps.stats.bytes_read <= bound
    assert maps.held_bytes <= bound
    assert maps.stats.malformed == (bound - len(lines)) // READ_CHUNK  # one per chunk of zeros
    assert peak < 4 * bound, peak


def test_the_bound_is_shared_and_least_recently_used_maps_go_first(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    clock = Clock()
    for pid in (11, 12, 13):
        fake_proc(tmp_path, pid, pid)
        (proc / f"{pid}/root/tmp/perf-{pid}.map").write_bytes(b"1000 10 f%d\n" % pid * 100)
    size = len(b"1000 10 f11\n") * 100
    maps = PerfMaps(proc, clock=clock, max_bytes=2 * size)
    assert maps.lookup(11, 0x1000) == "f11"
    clock.now += 0.1
    assert maps.lookup(12, 0x1000) == "f12"
    clock.now += 0.1
    assert maps.lookup(13, 0x1000) == "f13"  # 11 dropped for it
    assert maps.held_bytes == 2 * size
    assert maps.lookup(12, 0x1000) == "f12"
