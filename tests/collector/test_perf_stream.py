"""The streaming perf pipeline against real perf: sample-time buckets, hand-overs, stalls.

Durations here are bounds against hangs, never assertions; figures are printed
(run with ``-s``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from flamed.collapse.folded import Folded
from flamed.collector import Chunk, TargetSpec
from flamed.collector.procfs import resident_bytes
from flamed.collector.targets import pid_alive
from tests.collector.helpers import weight
from tests.collector.live import PROC, Resident, make, merged, running, start, until

pytestmark = pytest.mark.perf

FLIP_C = textwrap.dedent(
    """
    #include <stdlib.h>
    #include <time.h>
    volatile unsigned long sink;
    __attribute__((noinline)) void even(void) { for (int i = 0; i < 2000; i++) sink += i; }
    __attribute__((noinline)) void odd(void) { for (int i = 0; i < 2000; i++) sink += i; }
    __attribute__((noinline)) void near(void) { for (int i = 0; i < 50; i++) sink += i; }
    int main(int argc, char **argv) {
        /* even() in wall-clock buckets of argv[1] seconds with an even number, odd() in
           the others; near() in the last and first 0.5 ms of each, where the bucket a
           sample in even() or odd() belongs to could be in doubt. Runs argv[2] seconds. */
        double size = atof(argv[1]);
        time_t end = time(NULL) + atol(argv[2]);
        struct timespec now;
        while (time(NULL) < end) {
            clock_gettime(CLOCK_REALTIME, &now);
            double t = now.tv_sec + now.tv_nsec / 1e9, into = t / size - (long)(t / size);
            if (into * size < 0.0005 || (1 - into) * size < 0.0005) near();
            else if ((long)(t / size) & 1) odd();
            else even();
        }
        return 0;
    }
    """
)


def build_flip(folder: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (Debian: apt-get install gcc)")
    (folder / "flip.c").write_text(FLIP_C)
    binary = folder / "flamedflip"
    subprocess.run(
        [gcc, "-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(folder / "flip.c")],
        check=True,
        capture_output=True,
    )
    return binary


def by_start(chunks: list[Chunk]) -> dict[float, Folded]:
    """Each bucket's profile with its late parts added."""
    out: dict[float, Folded] = {}
    for chunk in chunks:
        out.setdefault(chunk.start, Folded()).update(chunk.folded)
    return out


async def test_buckets_are_cut_by_each_sample_s_own_time(
    perf: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """The program switches function at every bucket boundary of the wall clock: a bucket
    holds only its own function's samples, up to the last ones stamped before its end,
    although perf's pipe delivers them up to seconds later."""
    flip = subprocess.Popen([str(build_flip(tmp_path)), "1", "60"])
    processes.append(flip)
    pid = flip.pid
    chunks: list[Chunk] = []
    session = make(TargetSpec("flip", pids=(pid,), frequency=499), tmp_path, chunks)

    async def body() -> None:
        await until(lambda: len(by_start(chunks)) >= 7, "seven buckets")

    await running(session, body)
    buckets = sorted(by_start(chunks).items())[1:-1]  # the first and last are partial
    for start_time, folded in buckets:
        mine, other = ("even", "odd") if round(start_time) % 2 == 0 else ("odd", "even")
        assert weight(folded, mine) > 50, (start_time, folded.sorted_items())
        assert weight(folded, other) == 0, f"bucket {start_time} holds {other}() samples"
    late = sum(chunk.samples for chunk in chunks if chunk.samples and chunk.start in dict(buckets))
    print(f"FIGURE stream: {len(buckets)} buckets of 1 s at 499 Hz, samples {late}, "
          f"late {session.status.samples_late}")  # fmt: skip


def reference_times(data: Path, perf: str) -> list[float]:
    out = subprocess.run(
        [perf, "script", "-i", str(data), "-F", "time"], capture_output=True, check=True
    ).stdout
    return [float(word.rstrip(b":")) for word in out.split()]


async def test_a_hand_over_to_a_new_perf_loses_no_samples(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """perf outgrows a (tiny) memory cap every bucket: each time a new pipeline starts
    beside the old one and they hand over at a moment. A standalone perf record of the
    same process counts what each bucket should hold."""
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(TargetSpec("burn", pids=(pid,), frequency=199), tmp_path, chunks,
                   bucket_seconds=2, perf_rss_limit=1, event="cpu-clock")  # fmt: skip
    data = tmp_path / "reference.data"
    reference = subprocess.Popen(
        [perf, "record", "-k", "CLOCK_MONOTONIC", "-e", "cpu-clock", "-F", "199", "-g",
         "-p", str(pid), "-o", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    async def body() -> None:
        await until(lambda: session.status.restarts.get("rss", 0) >= 5, "five hand-overs")

    try:
        await running(session, body)
    finally:
        reference.send_signal(signal.SIGINT)
        reference.wait(60)
    times = [stamp + session.cutter.offset for stamp in reference_times(data, perf)]
    ours = theirs = 0
    for start_time, folded in sorted(by_start(chunks).items())[1:-1]:
        if min(times) <= start_time and start_time + 2 <= max(times):
            ours += int(folded.total())
            theirs += sum(1 for stamp in times if start_time <= stamp < start_time + 2)
    print(f"FIGURE stream: samples over hand-overs {ours}, standalone perf record {theirs}, "
          f"{100 * ours / max(theirs, 1):.1f} %, restarts {session.status.restarts}")  # fmt: skip
    assert theirs > 200, "too few samples to tell"
    assert 0.97 * theirs <= ours <= 1.03 * theirs, "samples lost (or counted twice)"
    assert "crash" not in session.status.restarts


@pytest.mark.slow
async def test_a_stalled_reader_loses_samples_in_the_kernel_not_memory(
    perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """flamed stops reading for 25 s (its event loop blocked): perf script blocks on its
    stdout, perf record on the pipe (1 MiB each: ~7 s of the whole machine at 999 Hz), the
    kernel drops samples and perf says how many. Nothing grows meanwhile, and perf is not
    blamed afterwards while perf script works through the backlog."""
    start(burn, processes, 120)
    chunks: list[Chunk] = []
    session = make(TargetSpec("all", all=True, frequency=999), tmp_path, chunks,
                   event="cpu-clock")  # fmt: skip

    async def body() -> None:
        await until(lambda: len(chunks) >= 2, "two buckets")
        pids = {"perf record": session.perf_pid or 0, "perf script": session.script_pid or 0}
        before = {name: resident_bytes(PROC, pid) for name, pid in pids.items()}
        before["flamed"] = resident_bytes(PROC, os.getpid())
        watch = Resident({**pids, "flamed": os.getpid()})
        watch.start()
        time.sleep(25)  # the event loop does nothing: nobody reads perf script's output
        watch.done.set()  # (afterwards perf script grows with the processes it learns of)
        watch.join()
        await until(lambda: session.status.samples_lost > 0, "perf's LOST records", 60)
        kept = len(chunks)
        await until(lambda: len(chunks) >= kept + 2, "buckets after the stall")
        grown = {name: (watch.peak[name] - before[name]) >> 20 for name in before}
        print(f"FIGURE stream: stalled 25 s at 999 Hz: lost {session.status.samples_lost}, "
              f"RSS growth MiB {grown}")  # fmt: skip
        assert all(growth < 32 for growth in grown.values()), grown
        assert (session.perf_pid, session.script_pid) == (pids["perf record"],
                                                          pids["perf script"])  # fmt: skip

    await running(session, body)
    assert "stalled" not in session.status.restarts, "flamed's own stall blamed on perf"


@pytest.mark.parametrize("victim", ["perf record", "perf script"])
async def test_a_stopped_perf_is_found_stuck_and_replaced(
    victim: str, perf: str, burn: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    pid = start(burn, processes)
    chunks: list[Chunk] = []
    session = make(TargetSpec("burn", pids=(pid,), frequency=199), tmp_path, chunks,
                   stall_timeout=3, event="cpu-clock")  # fmt: skip
    stopped = 0

    async def body() -> None:
        nonlocal stopped
        await until(lambda: len(chunks) >= 2, "two buckets")
        stopped = (session.perf_pid if victim == "perf record" else session.script_pid) or 0
        os.kill(stopped, signal.SIGSTOP)
        started = time.monotonic()
        await until(lambda: session.status.restarts.get("stalled") == 1, "the restart", 60)
        print(f"FIGURE stream: stopped {victim} found after {time.monotonic() - started:.1f} s "
              "(stall 3 s, buckets 1 s)")  # fmt: skip
        kept = len(chunks)
        await until(lambda: len(chunks) >= kept + 2, "buckets from the new pair")

    try:
        await running(session, body)
    finally:
        if stopped and pid_alive(PROC, stopped):
            os.kill(stopped, signal.SIGCONT)
    assert not pid_alive(PROC, stopped), f"the stopped {victim} was left behind"
    assert session.status.restarts == {"stalled": 1}
    assert weight(merged(chunks), "heavy") > 0
