"""Folding one input on several cores gives what one process gives."""

from __future__ import annotations

import os

import pytest

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


@pytest.mark.parametrize("native", NATIVE_PATHS)
@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("shape", ["uniform", "mixed"])
@pytest.mark.parametrize("options", [PerfOptions(), PerfOptions(include_tid=True)], ids=str)
def test_parts_fold_what_one_process_does(
    shape: str, parts: int, options: PerfOptions, native: bool
) -> None:
    data = inputs()[shape]
    collapser = PerfCollapser(options, native=native)
    got = fold_in_parts(collapser, data, parts).to_bytes()
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


def test_the_first_event_of_the_whole_input_is_kept() -> None:
    """A child, starting in the middle, sees another event first: its stacks must not
    count, as the whole input's first event is the one kept."""
    system = (DATA / "perf" / "system-wide.txt").read_bytes()
    data = system + b"\n\n" + system.replace(b" cpu-clock:", b" instructions:")
    got = fold_in_parts(PerfCollapser(native=False), data, 2).to_bytes()
    assert got == collapse(data) == collapse(system)


def test_a_part_without_events_lets_the_next_choose() -> None:
    """When the first part has no sample, the event kept is the first one of a later
    part, and a part after it with another event does not count."""
    system = (DATA / "perf" / "system-wide.txt").read_bytes()
    other = system.replace(b" cpu-clock:", b" instructions:")
    data = b"# only a comment\n" * 2000 + b"\n\n" + system + b"\n\n" + other
    got = fold_in_parts(PerfCollapser(native=False), data, 3).to_bytes()
    assert got == collapse(data) == collapse(system)


def test_a_failed_child_is_folded_here() -> None:
    data = inputs()["uniform"]
    collapser = PerfCollapser(native=False)
    parent = os.getpid()
    feed = collapser.feed

    def feed_or_fail_in_child(part: bytes) -> None:
        if os.getpid() != parent:
            raise MemoryError
        feed(part)

    collapser.feed = feed_or_fail_in_child  # type: ignore[method-assign]
    assert fold_in_parts(collapser, data, 2).to_bytes() == collapse(data)
    assert collapser.bytes_fed == len(data)
