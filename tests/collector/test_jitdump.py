"""jitdump files read by flamed (``jitdump = true``): found through /proc/PID/maps, parsed
bounded, re-read as they grow, hostile input counted.

The dumps here are written by ``dump()`` from perf's jitdump specification
(tools/perf/Documentation/jitdump-specification.txt): a header and
``JIT_CODE_LOAD`` records. A real one (``node --perf-prof``) is read in
tests/collector/test_jit_session.py.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from flamed.collector.jitdump import JitDump
from flamed.collector.perfmap import READ_CHUNK, PerfMaps
from tests.collector.test_perfmap import Clock, fake_proc

PID, NSPID = 4321, 7
MAGIC = 0x4A695444  # "JiTD" in this machine's byte order
HEADER = struct.Struct("<IIIIIIQQ")  # magic version total_size elf_mach pad1 pid timestamp flags
RECORD = struct.Struct("<IIQ")  # id total_size timestamp
CODE_LOAD = struct.Struct("<IIQQQQ")  # pid tid vma code_addr code_size code_index
DUMP = "srv/app/jit-7.dump"


def header() -> bytes:
    return HEADER.pack(MAGIC, 1, HEADER.size, 62, 0, NSPID, 1, 0)


def load(address: int, size: int, name: bytes, code: bytes = b"\x90" * 16) -> bytes:
    body = CODE_LOAD.pack(NSPID, NSPID, address, address, size, 1) + name + b"\0" + code
    return RECORD.pack(0, RECORD.size + len(body), 2) + body


def other(kind: int, body: bytes = b"x" * 24) -> bytes:
    return RECORD.pack(kind, RECORD.size + len(body), 3) + body


def proc_with_dump(tmp_path: Path, data: bytes) -> tuple[Path, Path]:
    """A /proc-like folder whose process maps ``/srv/app/jit-7.dump`` (its own pid: 7)."""
    proc = fake_proc(tmp_path, PID, NSPID)
    path = proc / str(PID) / "root" / DUMP
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    (proc / str(PID) / "maps").write_text(
        "55d0c0000000-55d0c0001000 r-xp 00000000 08:01 99 /usr/bin/node\n"
        f"7f0000000000-7f0000001000 r-xp 00000000 08:01 42 /{DUMP}\n"
    )
    return proc, path


def dumps(proc: Path, clock: Clock | None = None) -> PerfMaps:
    return PerfMaps(proc, format=JitDump(), clock=clock or Clock())


def test_code_load_records_name_their_code(tmp_path: Path) -> None:
    data = header() + load(0x1000, 0x100, b"JS:*first /app/a.js:1:1") + other(2)
    data += load(0x2000, 0x10, b"py::work:/app/b.py")
    proc, _ = proc_with_dump(tmp_path, data)
    reader = dumps(proc)
    assert reader.lookup(PID, 0x10FF) == "JS:*first /app/a.js:1:1"
    assert reader.lookup(PID, 0x1100) is None
    assert reader.lookup(PID, 0x2000) == "py::work:/app/b.py"
    assert reader.stats.lines == 3 and reader.stats.malformed == 0


def test_a_growing_dump_is_read_from_where_it_stopped(tmp_path: Path) -> None:
    first = header() + load(0x1000, 0x10, b"early")
    late = load(0x3000, 0x10, b"late")
    proc, path = proc_with_dump(tmp_path, first + late[:20])  # a record half written
    clock = Clock()
    reader = dumps(proc, clock)
    assert reader.lookup(PID, 0x1000) == "early"
    assert reader.lookup(PID, 0x3000) is None
    path.write_bytes(first + late)
    clock.now += 0.2  # a miss looks again
    assert reader.lookup(PID, 0x3000) == "late"
    assert reader.stats.bytes_read == len(first + late)
    assert reader.stats.malformed == 0


def test_code_bigger_than_a_read_is_skipped_not_read(tmp_path: Path) -> None:
    big = load(0x1000, 0x10, b"big", code=bytes(3 * READ_CHUNK))
    proc, _ = proc_with_dump(tmp_path, header() + big + load(0x2000, 0x10, b"after"))
    reader = dumps(proc)
    assert reader.lookup(PID, 0x1000) == "big"
    assert reader.lookup(PID, 0x2000) == "after"
    assert reader.held_bytes < 1024


def test_the_dump_is_found_by_the_pid_the_process_sees(tmp_path: Path) -> None:
    proc, _ = proc_with_dump(tmp_path, header() + load(0x1000, 0x10, b"f"))
    maps = proc / str(PID) / "maps"
    maps.write_text(maps.read_text().replace("jit-7.dump", f"jit-{PID}.dump"))
    assert dumps(proc).lookup(PID, 0x1000) is None  # another process's name


def test_a_symlink_on_the_way_is_not_followed(tmp_path: Path) -> None:
    proc, path = proc_with_dump(tmp_path, header() + load(0x1000, 0x10, b"f"))
    elsewhere = tmp_path / "elsewhere"
    path.parent.rename(elsewhere)
    path.parent.symlink_to(elsewhere)
    reader = dumps(proc)
    assert reader.lookup(PID, 0x1000) is None
    assert reader.stats.refused == {"symlink": 1}


def test_hostile_dumps_are_counted_and_never_hang(tmp_path: Path) -> None:
    cases = {
        "garbage": os.urandom(1 << 16),
        "bad header size": HEADER.pack(MAGIC, 1, 1 << 20, 62, 0, NSPID, 1, 0),
        "record of size 0": header() + load(0x1000, 0x10, b"kept") + RECORD.pack(0, 0, 0),
        "name without its end": header() + RECORD.pack(0, 200, 0) + b"\x01" * 184,
    }
    for label, data in cases.items():
        folder = tmp_path / label.replace(" ", "_")
        folder.mkdir()
        proc, _ = proc_with_dump(folder, data)
        reader = dumps(proc)
        named = reader.lookup(PID, 0x1000)
        assert named == ("kept" if label == "record of size 0" else None), label
        assert reader.stats.malformed == 1, label


def test_a_process_without_a_dump_reads_nothing(tmp_path: Path) -> None:
    proc, _ = proc_with_dump(tmp_path, header())
    (proc / str(PID) / "maps").write_text("55d0c0000000-55d0c0001000 r-xp 0 08:01 9 /bin/x\n")
    reader = dumps(proc)
    assert reader.lookup(PID, 0x1000) is None
    assert reader.stats.bytes_read == 0 and not reader.stats.refused


def test_a_record_cut_by_the_end_of_a_read_is_read_whole_next() -> None:
    """A look reads a bounded amount: a record it cuts before its name ends is read again
    by the next look, which starts at that record."""
    name = b"a_rather_long_name_" * 8
    data = header() + load(0x1000, 0x10, name)
    start = HEADER.size
    for cut in (start + 20, start + RECORD.size + CODE_LOAD.size + 5):
        found = JitDump().split(data[start:cut], start, len(data))
        assert (found.entries, found.consumed, found.malformed) == ([], 0, 0), cut
    whole = JitDump().split(data[start:], start, len(data))
    assert whole.entries == [(0x1000, 0x1010, name)]
