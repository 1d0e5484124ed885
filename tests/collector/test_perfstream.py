"""perf record's stream mended on its way to perf script: the oversized KSYMBOL records.

Linux (6.18 here, and every version since KSYMBOL records exist) grows a
KSYMBOL record's size by the sample-id fields of each perf event it was written
to before, so with a second perf session on the machine perf script reads a
stale event id at the record's end and exits 234 ("failed to process type:
17"). The streams here are real ``perf record -o -`` output; the oversized
record is made as the kernel makes it (the right record, its size grown by the
other session's 32 bytes, stale bytes after it) or comes from the real trigger.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collector import Chunk, TargetSpec
from flamed.collector.perf import script_argv
from flamed.collector.perfstream import HEADER_ATTR, KSYMBOL, RECORD, StreamMender
from flamed.collector.pipeline import start_pipeline
from tests.collector.helpers import build_burn, require_perf, weight
from tests.collector.live import make, merged, running, until

STALE = b"\xa5" * 32
"""What another session's sample-id fields leave at the end of an oversized record."""


def records(stream: bytes) -> list[bytes]:
    """The pipe header, then each record (the streams here have no payload records)."""
    out, pos = [stream[:16]], 16
    while pos < len(stream):
        size = RECORD.unpack_from(stream, pos)[2]
        out.append(stream[pos : pos + size])
        pos += size
    return out


def ksymbol(name: str, sample_id: bytes, stale: bytes = b"") -> bytes:
    """A BPF program's KSYMBOL record, registering it, as Linux writes it."""
    padded = name.encode() + b"\0" * (8 - len(name) % 8)
    body = struct.pack("<QIHH", 0xFFFFFFFFC0F00000, 64, 1, 0) + padded + sample_id
    return RECORD.pack(KSYMBOL, 0, 8 + len(body) + len(stale)) + body + stale


def tracking_sample_id(parts: list[bytes]) -> bytes:
    """Sample-id fields (tid, time, id, cpu) naming the event that tracks KSYMBOLs, stamped
    with the first sample's time."""
    ids = []
    for part in parts[1:]:
        if RECORD.unpack_from(part)[0] == HEADER_ATTR:
            attr_size = struct.unpack_from("<I", part, 12)[0]
            flags = struct.unpack_from("<Q", part, 8 + 40)[0]
            if flags & (1 << 29):  # attr.ksymbol
                ids.append(struct.unpack_from("<Q", part, 8 + attr_size)[0])
    first = next(p for p in parts[1:] if RECORD.unpack_from(p)[0] == 9)  # a sample
    stamp = struct.unpack_from("<Q", first, 8 + 16)[0]  # after ip, pid/tid
    return struct.pack("<IIQQII", 0, 0, stamp, ids[0], 0, 0)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One second of the whole machine, as the daemon's perf record writes it, while the
    burner runs (the machine has two events then: samples and tracking)."""
    perf = require_perf()
    folder = tmp_path_factory.mktemp("stream")
    burner = subprocess.Popen([str(build_burn(folder)), "30"])
    try:
        argv = [perf, "record", "-F", "499", "-e", "cpu-clock", "--call-graph", "fp"]
        argv += ["-k", "CLOCK_MONOTONIC", "-o", "-", "--no-buildid-cache", "--no-bpf-event"]
        argv += ["-a", "--", "sleep", "1"]
        done = subprocess.run(argv, capture_output=True, check=True, timeout=60)
    finally:
        burner.kill()
        burner.wait()
    return done.stdout


def with_ksymbol(stream: bytes, stale: bytes) -> bytes:
    """The stream with a KSYMBOL record (oversized by ``stale``) before its first sample."""
    parts = records(stream)
    at = next(i for i, p in enumerate(parts) if i and RECORD.unpack_from(p)[0] == 9)
    parts.insert(at, ksymbol("bpf_prog_0123456789abcdef_flamed", tracking_sample_id(parts), stale))
    return b"".join(parts)


def script(perf: str, stream: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(script_argv(perf), input=stream, capture_output=True, timeout=120)


def mend(stream: bytes, pieces: list[int] | None = None) -> tuple[bytes, Counter[str]]:
    fixed: Counter[str] = Counter()
    mender = StreamMender(lambda fix: fixed.update([fix]))
    out, pos = [], 0
    for size in pieces or [len(stream)]:
        out.append(mender.feed(stream[pos : pos + size]))
        pos += size
    out += [mender.feed(stream[pos:]), mender.finish()]
    return b"".join(out), fixed


@pytest.mark.perf
def test_perf_script_fails_on_an_oversized_ksymbol_and_reads_it_mended(stream: bytes) -> None:
    """The kernel's oversized record stops perf script as it stopped the daemon's; mended,
    perf script prints just what it prints for the record the kernel meant to write."""
    perf = require_perf()
    broken = script(perf, with_ksymbol(stream, STALE))
    assert broken.returncode == 234
    assert b"failed to process type: 17" in broken.stderr
    meant = script(perf, with_ksymbol(stream, b""))
    assert meant.returncode == 0, meant.stderr
    mended, fixed = mend(with_ksymbol(stream, STALE))
    assert fixed == {"truncated": 1}
    assert mended == with_ksymbol(stream, b"")
    read = script(perf, mended)
    assert (read.returncode, read.stdout) == (0, meant.stdout)
    assert b"flamedburn" in read.stdout


@pytest.mark.perf
@settings(max_examples=60, deadline=None)
@given(pieces=st.lists(st.integers(min_value=1, max_value=9000), max_size=40))
def test_pieces_of_any_size_mend_alike(stream: bytes, pieces: list[int]) -> None:
    """However the pipe cuts the stream, what comes out is the same."""
    broken = with_ksymbol(stream, STALE)
    assert mend(broken, pieces) == mend(broken)
    assert mend(stream, pieces) == (stream, Counter())


@pytest.mark.perf
def test_records_past_mending_are_dropped_and_others_pass(stream: bytes) -> None:
    parts = records(stream)
    sample_id = tracking_sample_id(parts)
    unended = ksymbol("x" * 16, sample_id)
    unended = unended[:24] + b"y" * (len(unended) - 24)  # no NUL: no name
    short = ksymbol("bpf_prog_short", sample_id)
    short = RECORD.pack(KSYMBOL, 0, len(short) - 8) + short[8:-8]  # lacks a field
    right = ksymbol("bpf_prog_right", sample_id)
    at = len(parts) // 2
    parts[at:at] = [unended, short, right]
    mended, fixed = mend(b"".join(parts))
    assert fixed == {"dropped": 2}
    assert mended == b"".join(p for p in parts if p not in (unended, short))


def test_a_ksymbol_before_any_attribute_passes_as_it_is() -> None:
    """Without the attributes the true size is not known: nothing is touched."""
    stream = b"PERFILE2" + struct.pack("<Q", 16) + ksymbol("early", b"\0" * 8, STALE)
    assert mend(stream) == (stream, Counter())


@pytest.mark.perf
async def test_the_pipeline_relays_a_stream_through_the_mender_to_perf_script(
    stream: bytes, tmp_path: Path
) -> None:
    """perf record's part played by ``cat`` of the broken stream: the real perf script
    reads all of it and ends when its input does."""
    perf = require_perf()
    source = tmp_path / "broken.data"
    source.write_bytes(with_ksymbol(stream, STALE))
    fixed: Counter[str] = Counter()
    out: list[bytes] = []
    run = await start_pipeline(
        ["cat", str(source)],
        script_argv(perf),
        out.append,
        name="t",
        mender=StreamMender(lambda fix: fixed.update([fix])),
    )
    await asyncio.wait_for(asyncio.shield(run.ended), timeout=120)
    await run.settle(5)
    assert (run.record.returncode, run.script.returncode) == (0, 0)
    assert fixed == {"truncated": 1}
    assert b"".join(out) == script(perf, with_ksymbol(stream, b"")).stdout
    await run.kill()


@pytest.mark.perf
@pytest.mark.slow
async def test_a_second_perf_and_a_bpf_program_leave_the_daemon_s_perf_running(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]], perf: str
) -> None:
    """The real trigger: the daemon samples the machine, then another perf session starts
    (its events come first in the kernel's list) and bpftrace loads and unloads BPF
    programs. perf script used to exit 234 at the first KSYMBOL; now the records are
    mended and counted, nothing restarts, and the samples after them are folded."""
    if not (bpftrace := shutil.which("bpftrace")):
        pytest.skip("bpftrace is not installed")
    processes.append(subprocess.Popen([str(build_burn(tmp_path)), "120"]))
    chunks: list[Chunk] = []
    session = make(TargetSpec("all", all=True, frequency=99), tmp_path, chunks)
    other = [perf, "record", "-a", "-e", "cpu-clock", "-F", "9", "-o", str(tmp_path / "o.data")]

    async def body() -> None:
        await until(lambda: bool(chunks), "a first bucket")
        processes.append(subprocess.Popen([*other, "--no-bpf-event"], stderr=subprocess.DEVNULL))
        await asyncio.sleep(1)  # the other perf's events are open
        probe = [bpftrace, "-e", "kprobe:do_nanosleep { @[comm] = count(); exit(); }"]
        await asyncio.to_thread(subprocess.run, probe, capture_output=True, timeout=120)
        status = session.status
        await until(lambda: bool(status.records_fixed or status.restarts), "a mending (or a crash)")
        assert status.restarts.get("crash", 0) == 0, status.last_error
        mended_at.append(time.time())
        await until(lambda: any(c.start >= mended_at[0] for c in chunks), "a bucket after it")

    mended_at: list[float] = []
    await running(session, body)
    assert session.status.restarts.get("crash", 0) == 0, session.status.last_error
    assert session.status.records_fixed.get("truncated", 0) > 0
    after = merged([c for c in chunks if c.start >= mended_at[0]])
    assert weight(after, "work") > 0, after.sorted_items()[:5]


@settings(max_examples=200, deadline=None)
@given(
    attribute=st.booleans(),
    body=st.binary(max_size=3000),
    pieces=st.lists(st.integers(min_value=1, max_value=700), max_size=10),
)
def test_any_bytes_are_passed_on_whole_and_alike_in_pieces(
    attribute: bool, body: bytes, pieces: list[int]
) -> None:
    """Whatever follows the pipe header (here maybe a HEADER_ATTR of an event tracking
    KSYMBOLs, then anything), the mender neither raises nor loses a byte it does not
    drop, however the input is cut."""
    head = b"PERFILE2" + struct.pack("<Q", 16)
    if attribute:
        attr = bytearray(120)
        struct.pack_into("<IIQQQQQ", attr, 0, 1, 120, 9, 99, 0x1C6, 0, (1 << 29) | (1 << 18))
        head += RECORD.pack(HEADER_ATTR, 0, 8 + 120 + 8) + bytes(attr) + struct.pack("<Q", 7)
    whole, fixed = mend(head + body)
    assert mend(head + body, pieces) == (whole, fixed)
    if not fixed:
        assert whole == head + body
