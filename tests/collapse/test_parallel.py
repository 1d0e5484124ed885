"""Folding one input on several cores gives what one process gives."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flamed.collapse.common import Collapser
from flamed.collapse.dtrace import DTraceCollapser
from flamed.collapse.parallel import cut_points, fold_in_parts
from flamed.collapse.perf import PerfCollapser, PerfOptions
from tests.conftest import DATA, NATIVE_PATHS


def collapse(data: bytes, options: PerfOptions | None = None) -> bytes:
    collapser = PerfCollapser(options, native=False)
    collapser.feed(data)
    return collapser.finish().to_bytes()


def inputs() -> dict[str, bytes]:
    system = (DATA / "perf" / "system-wide.txt").read_bytes()
    return {
        "uniform": b"\n".join([system] * 3),
        "mixed": b"\n".join([system, (DATA / "perf" / "no-callchain.txt").read_bytes(), system]),
    }


Source = Callable[[bytes], "bytes | mmap.mmap"]


@pytest.fixture(params=["bytes", "map"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    """How the input is handed over: as bytes, or as a map of a file (`flamed collapse`
    maps plain files for the C folders, and the children fold their parts of the map)."""

    def hand_over(data: bytes) -> bytes | mmap.mmap:
        if request.param == "bytes":
            return data
        path = tmp_path / "input.txt"
        path.write_bytes(data)
        with path.open("rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        maps.append(mapped)
        return mapped

    maps: list[mmap.mmap] = []
    yield hand_over
    for mapped in maps:
        mapped.close()


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("shape", ["uniform", "mixed"])
@pytest.mark.parametrize("options", [PerfOptions(), PerfOptions(include_tid=True)], ids=str)
def test_parts_fold_what_one_process_does(
    shape: str, parts: int, options: PerfOptions, native: bool, source: Source
) -> None:
    data = inputs()[shape]
    collapser = PerfCollapser(options, native=native)
    got = fold_in_parts(collapser, source(data), parts).to_bytes()
    assert got == collapse(data, options)
    # this process folded its part only: the children did the rest
    assert 0 < collapser.bytes_fed < len(data) * 2 // 3


def test_cut_points_are_record_breaks() -> None:
    data = inputs()["uniform"]
    cuts = cut_points(data, 4)
    assert len(cuts) == 3 and cuts == sorted(cuts)
    for cut in cuts:
        assert data[cut - 1 : cut + 1] == b"\n\n"
    assert cut_points(b"one record\n", 2) == []


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_a_record_across_the_middle_is_folded_whole(native: bool, source: Source) -> None:
    """The middle of the input falls inside a long record: the cut is at the record break
    after it, and the record is folded once, whole, by this process."""
    record = b"prog 1/1 [000] 1.0: 5 cycles:\n" + b"".join(
        b"\t%x f%d (/bin/prog)\n" % (index, index) for index in range(400)
    )
    short = b"prog 1/1 [000] 2.0: 7 cycles:\n\t1 main (/bin/prog)\n"
    data = short + b"\n" + record + b"\n" + short
    assert data.find(b"\n\n", len(data) // 2) == len(short + record)
    collapser = PerfCollapser(native=native)
    got = fold_in_parts(collapser, source(data), 2).to_bytes()
    assert got == collapse(data)
    assert got.count(b"\n") == 2 and collapser.bytes_fed == len(short + record) + 1


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_the_first_event_of_the_whole_input_is_kept(native: bool, source: Source) -> None:
    """A child, starting in the middle, sees another event first: its stacks must not
    count, as the whole input's first event is the one kept."""
    system = (DATA / "perf" / "system-wide.txt").read_bytes()
    data = system + b"\n\n" + system.replace(b" cpu-clock:", b" instructions:")
    collapser = PerfCollapser(native=native)
    got = fold_in_parts(collapser, source(data), 2).to_bytes()
    assert got == collapse(data) == collapse(system)
    assert collapser.bytes_fed == len(data)  # the child's part was folded here after all


def test_a_part_without_events_lets_the_next_choose() -> None:
    """When the first part has no sample, the event kept is the first one of a later
    part, and a part after it with another event does not count."""
    system = (DATA / "perf" / "system-wide.txt").read_bytes()
    other = system.replace(b" cpu-clock:", b" instructions:")
    data = b"# only a comment\n" * 2000 + b"\n\n" + system + b"\n\n" + other
    got = fold_in_parts(PerfCollapser(native=False), data, 3).to_bytes()
    assert got == collapse(data) == collapse(system)


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_a_failed_child_is_folded_here(native: bool, source: Source) -> None:
    data = inputs()["uniform"]
    collapser = PerfCollapser(native=native)
    parent = os.getpid()
    feed_range = collapser.feed_range

    def feed_or_fail_in_child(part: bytes | mmap.mmap, start: int, stop: int) -> None:
        if os.getpid() != parent:
            raise MemoryError
        feed_range(part, start, stop)

    collapser.feed_range = feed_or_fail_in_child  # type: ignore[method-assign,assignment]
    assert fold_in_parts(collapser, source(data), 2).to_bytes() == collapse(data)
    assert collapser.bytes_fed == len(data)


def dtrace_input() -> bytes:
    """DTrace stacks, some of kernel and user frames with a blank line between them (one
    stack going on across it), and several dumps, each with its header."""
    stack_ustack = (DATA / "dtrace" / "stack-ustack.txt").read_bytes()
    dumps = (DATA / "dtrace" / "multi-dump.txt").read_bytes()
    return b"\n".join([stack_ustack, dumps] * 4)


def dtrace_fold(collapser: Collapser, data: bytes) -> bytes:
    collapser.feed(data)
    return collapser.finish().to_bytes()


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("parts", [2, 3, 5])
def test_dtrace_parts_fold_what_one_process_does(native: bool, parts: int, source: Source) -> None:
    data = dtrace_input()
    collapser = DTraceCollapser(native=native)
    got = fold_in_parts(collapser, source(data), parts).to_bytes()
    assert got == dtrace_fold(DTraceCollapser(native=False), data)
    assert collapser.bytes_fed < len(data) * 2 // 3


@pytest.mark.parametrize("native", NATIVE_PATHS)
def test_dtrace_is_not_cut_where_a_stack_goes_on(native: bool) -> None:
    """Kernel frames, a blank line, then user frames and the count are one stack: the cut
    may not fall on that blank line (a part would start with user frames alone)."""
    data = dtrace_input()
    collapser = DTraceCollapser(native=native)
    for start in range(0, len(data), 7):
        found = collapser.part_break(data, start)
        if found < 0:
            break
        line = data[data.rfind(b"\n", 0, found) + 1 : found]
        assert line.strip().isdigit(), (start, line)
    kernel_only = data.index(b"sys_syscall+0x17d\n\n") + len(b"sys_syscall+0x17d\n")
    assert collapser.part_break(data, kernel_only - 1) > kernel_only
    # cut there anyway, and the stack is lost: what part_break keeps from happening
    naive = DTraceCollapser(native=native)
    naive.feed(data[: kernel_only + 1])
    wrong = naive.finish()
    rest = DTraceCollapser(native=native)
    rest.feed(data[kernel_only + 1 :])
    wrong.update(rest.finish())
    assert wrong.to_bytes() != dtrace_fold(DTraceCollapser(native=False), data)
