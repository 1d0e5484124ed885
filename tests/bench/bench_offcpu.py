"""Benchmark (issue 19): what counting off-CPU time in the kernel costs, per context switch.

A C program switches context at a chosen rate: two threads play ping-pong over
two pipes, paced by the first thread's clock (each exchange blocks and wakes
both). Each run lasts ``--seconds``; runs alternate without the off-CPU session,
with it on that program's pid (flamed's bpftrace program, the real one), and with
it on another (sleeping) process; for the runs with it, bpftrace's own CPU is
added. The cost is

    (CPU of the program and bpftrace with tracing - CPU of the program without)
    / the run's length, in % of one core,

CPU time (user + system of every thread, /proc/PID/stat), not wall time: the BPF
program runs at each switch in the switching thread's context and is billed to
it, while other work on the machine bills neither side. The switches/s are the
program's own (voluntary and involuntary switches of its threads, /proc). With
the cost per switch, the rate at which it reaches 1 % of a core follows. The
runs beside another target measure what every other switch on the machine costs
(the program's first test: is it the target?).

    python tests/bench/bench_offcpu.py [--rates 2000,5000,20000] [--seconds 10] [--rounds 3]

Needs gcc, bpftrace, root and tracefs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flamed.collector import TargetSpec, create_session  # noqa: E402
from flamed.collector.offcpu import OffCpuSession  # noqa: E402

PINGPONG = r"""
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static int ping[2], pong[2];
static void *answer(void *arg) {
    char byte;
    (void)arg;
    while (read(ping[0], &byte, 1) == 1) write(pong[1], &byte, 1);
    return NULL;
}
int main(int argc, char **argv) {
    double rate = atof(argv[1]);  /* exchanges per second; each is 2 switches */
    pthread_t other;
    char byte = 0;
    pipe(ping);
    pipe(pong);
    pthread_create(&other, NULL, answer, NULL);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long step = (long)(1e9 / rate * 64);
    for (;;) {  /* 64 exchanges, then sleep until their time is up */
        for (int i = 0; i < 64; i++) {
            write(ping[1], &byte, 1);
            read(pong[0], &byte, 1);
        }
        next.tv_nsec += step;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
"""

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def build(folder: Path) -> Path:
    source, binary = folder / "pingpong.c", folder / "pingpong"
    source.write_text(PINGPONG)
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(source)], check=True)
    return binary


async def one_run(
    binary: Path, rate: int, seconds: float, traced: str = ""
) -> tuple[float, float, float]:
    """(CPU seconds per second of the program, plus bpftrace's when traced; switches/s;
    bpftrace's part alone). ``traced``: "" not traced, "self" the program is the target,
    "other" a sleeping process is (the program's switches only run the first test)."""
    program = subprocess.Popen([str(binary), str(rate / 2)])
    other = subprocess.Popen(["sleep", "1000"])
    session: OffCpuSession | None = None
    task = None
    try:
        if traced:
            pid = program.pid if traced == "self" else other.pid
            spec = TargetSpec(name="pingpong", pids=(pid,))
            made = create_session(
                spec, bucket_seconds=10, on_chunk=lambda c: None, profile="offcpu"
            )
            assert isinstance(made, OffCpuSession)
            session = made
            task = asyncio.create_task(session.run())
            while session.dumps is None or session.dumps.count == 0:  # attached
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # settled
        tracer = session.child_pid if session is not None else None
        cpu0, sw0, t0 = cpu_seconds(program.pid), switches(program.pid), time.monotonic()
        tracer0 = cpu_seconds(tracer) if tracer else 0.0
        await asyncio.sleep(seconds)
        cpu1, sw1, t1 = cpu_seconds(program.pid), switches(program.pid), time.monotonic()
        tracer1 = cpu_seconds(tracer) if tracer else 0.0
        spent, tracer_spent = (cpu1 - cpu0) + (tracer1 - tracer0), tracer1 - tracer0
        return spent / (t1 - t0), (sw1 - sw0) / (t1 - t0), tracer_spent / (t1 - t0)
    finally:
        if session is not None and task is not None:
            await session.stop()
            await task
        for proc in (program, other):
            proc.kill()
            proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="2000,5000,20000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("bpftrace") is None or os.geteuid() != 0:
        raise SystemExit("needs bpftrace and root")
    with tempfile.TemporaryDirectory() as folder:
        binary = build(Path(folder))
        for rate in (int(r) for r in args.rates.split(",")):
            runs: dict[str, list[float]] = {"": [], "self": [], "other": []}
            rates: list[float] = []
            tracer: list[float] = []
            for _ in range(args.rounds):  # alternating: without, with, beside, without ...
                for mode, found in runs.items():
                    cpu, seen, alone = await one_run(binary, rate, args.seconds, mode)
                    found.append(cpu)
                    rates.append(seen)
                    if mode == "self":
                        tracer.append(alone)
            report(rate, runs[""], runs["self"], rates)
            print(f"  of which bpftrace itself: {100 * statistics.median(tracer):.2f} %")
            report(rate, runs[""], runs["other"], rates, "another process traced: ")


def report(
    rate: int, plain: list[float], traced: list[float], rates: list[float], what: str = ""
) -> None:
    without, with_, seen = (statistics.median(x) for x in (plain, traced, rates))
    cost = with_ - without
    per_switch = cost / seen if seen else float("nan")
    at_one = 0.01 / per_switch if per_switch > 0 else float("inf")
    print(
        f"{what}asked {rate}/s: {seen:,.0f} switches/s; CPU without {100 * without:.2f} %, with "
        f"{100 * with_:.2f} % of a core (medians of {len(plain)}); off-CPU counting "
        f"{100 * cost:.2f} % = {1e6 * per_switch:.2f} us per switch; 1 % of a core at "
        f"{at_one:,.0f} switches/s"
    )
    print(f"  runs without: {[round(100 * x, 2) for x in plain]}")
    print(f"  runs with:    {[round(100 * x, 2) for x in traced]}")


if __name__ == "__main__":
    asyncio.run(main())
