"""Does folding on two cores pay, and from what size? In process, C speedups, alternating.

    python tests/bench/bench_parts.py --input /work/refs/data/diverse-40s.txt \\
        [--format perf|dtrace] [--sizes 2,4,8,16,32] [--runs 7]

For each size (the input's first MiB, cut at a record break; the whole input where
it is smaller), the input is written to a file, mapped as `flamed collapse` maps it
and folded, runs alternating: on one core (``feed`` of the whole map, ``finish``), and
in two parts (``fold_in_parts``: a forked child folds the second half). Printed: the
medians of the wall time and of this process's CPU time (and of it, the part before it
waits for the child), the child's CPU time, and the "critical path": the longer of the
two before that wait, and this process's CPU time after it, as wall time would be on
two idle cores. On a loaded machine wall time mostly says how busy it was; the CPU
figures say what each process did.
"""

from __future__ import annotations

import argparse
import gc
import mmap
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script from anywhere

from flamed.collapse import parallel  # noqa: E402
from flamed.collapse.common import Collapser, retire_into  # noqa: E402
from flamed.collapse.dtrace import DTraceCollapser  # noqa: E402
from flamed.collapse.perf import PerfCollapser  # noqa: E402
from tests.bench.timing import child_cpu  # noqa: E402

MAKERS: dict[str, Callable[[], Collapser]] = {
    "perf": lambda: PerfCollapser(native=True),
    "dtrace": lambda: DTraceCollapser(native=True),
}


def prefix(data: bytes, mib: int) -> bytes:
    """The first ``mib`` MiB of ``data``, up to a record break."""
    size = mib << 20
    if size >= len(data):
        return data
    return data[: data.index(b"\n\n", size) + 2]


WAITS: list[float] = []
"""This process's CPU time when it starts waiting for its children's results."""
_child_result = parallel.child_result


def timed_child_result(child: int, read_end: int) -> parallel.PartResult | None:
    WAITS.append(time.process_time())
    return _child_result(child, read_end)


parallel.child_result = timed_child_result


def run_once(path: Path, make: Callable[[], Collapser], parts: int) -> tuple[float, ...]:
    """(wall, this process's CPU, of which before it waits, the child's CPU, the critical
    path) of one fold of the mapped file. The critical path: this process's CPU time
    before it waits for the child, or the child's, whichever is longer, and its CPU time
    after."""
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        collapser = make()
        WAITS.clear()
        children, wall, cpu = child_cpu(), time.perf_counter(), time.process_time()
        if parts == 1:
            collapser.feed(data)  # type: ignore[arg-type]  # the C folders read maps
            collapser.finish()
        else:
            parallel.fold_in_parts(collapser, data, parts)
        end = time.process_time()
        child = child_cpu() - children
        before = (WAITS[0] if WAITS else end) - cpu
        after = end - cpu - before
        return time.perf_counter() - wall, end - cpu, before, child, max(before, child) + after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--format", choices=sorted(MAKERS), default="perf")
    parser.add_argument("--sizes", default="2,4,8,16,32", help="MiB, comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    whole = args.input.read_bytes()
    make = MAKERS[args.format]
    gc.disable()  # as `flamed collapse` runs, its caches kept to the end
    kept: list[object] = []
    retire_into(kept)
    print(f"{args.input.name}, {args.format}: medians of {args.runs} alternating runs, ms")
    print(" MiB | 1 core: wall  CPU | 2 parts: wall  CPU here (before wait)  CPU child  critical")
    for mib in (int(size) for size in args.sizes.split(",")):
        data = prefix(whole, mib)
        with tempfile.NamedTemporaryFile(suffix=".txt") as file:
            file.write(data)
            file.flush()
            path = Path(file.name)
            one: list[tuple[float, ...]] = []
            two: list[tuple[float, ...]] = []
            for _ in range(args.runs):
                one.append(run_once(path, make, 1))
                two.append(run_once(path, make, 2))
                kept.clear()
        wall1, cpu1, *_ = (1000 * statistics.median(column) for column in zip(*one, strict=True))
        wall2, here, before, child, critical = (
            1000 * statistics.median(column) for column in zip(*two, strict=True)
        )
        print(
            f"{len(data) / (1 << 20):4.0f} | {wall1:11.1f} {cpu1:5.1f} |"
            f" {wall2:13.1f} {here:9.1f} {before:13.1f} {child:10.1f} {critical:9.1f}"
        )
        if len(data) == len(whole):
            break


if __name__ == "__main__":
    main()
