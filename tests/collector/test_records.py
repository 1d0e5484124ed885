"""perf script's stream cut at its records: times, LOST lines, splits anywhere."""

from __future__ import annotations

import gzip
import itertools
import logging
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collapse import speedups
from flamed.collector.buckets import MAX_LATE, BucketCutter
from flamed.collector.records import HEAD, PerfRecords, cut_runs
from tests.collector.streams import Kept, lost, record
from tests.conftest import CONFORMANCE, DATA, NATIVE_PATHS

STREAM = b"".join(
    [
        record(1.5, ("a", "main")),
        record(9.999999, ("b", "main")),
        lost(10.2, 7),
        record(10.25, ("c", "main")),
        record(19.0, ("a", "main"), comm="with space 12/34 5.6:"),
        lost(21.0, 3),
        record(21.5, ("d", "main")),
    ]
)


@pytest.fixture(params=NATIVE_PATHS)
def native(request: pytest.FixtureRequest) -> bool:
    """Both ways through the cutting: the pure-Python reference, and the C speedups."""
    return bool(request.param)


def cut(chunks: list[bytes], now: float = 22.0, native: bool = False) -> tuple[Kept, list[int]]:
    kept = Kept(grace=100.0)
    losses: list[int] = []
    records = PerfRecords(kept.cutter, on_lost=losses.append, clock=lambda: now, native=native)
    for chunk in chunks:
        records.feed(chunk)
    records.finish()
    kept.cutter.close_all()
    return kept, losses


def by_bucket(kept: Kept) -> dict[float, dict[str, float]]:
    out: dict[float, dict[str, float]] = {}
    for handed in kept.handed:
        counts = out.setdefault(handed.start, {})
        for stack, count in handed.folded.items():
            counts[stack] = counts.get(stack, 0) + count
    return out


def test_records_go_to_the_bucket_of_their_time_and_losses_are_counted(
    caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    with caplog.at_level(logging.WARNING):
        kept, losses = cut([STREAM], native=native)
    assert by_bucket(kept) == {
        1000.0: {"burn;main;a": 1, "burn;main;b": 1},
        1010.0: {"burn;main;c": 1, "with_space;main;a": 1},  # the collapser names it
        1020.0: {"burn;main;d": 1},
    }
    assert losses == [7, 3]
    assert not caplog.records, "a LOST line reached the collapser"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=8))
def test_splitting_the_stream_anywhere_changes_nothing(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    for native in (False, speedups.built() is not None):
        kept, losses = cut(chunks, native=native)
        whole, whole_losses = cut([STREAM])
        assert by_bucket(kept) == by_bucket(whole)
        assert losses == whole_losses


def test_a_last_record_without_its_blank_line_counts(native: bool) -> None:
    kept, _ = cut([record(3.0).rstrip(b"\n")], native=native)
    assert by_bucket(kept) == {1000.0: {"burn;main;work": 1}}


def test_text_before_any_record_goes_to_the_bucket_of_the_moment(native: bool) -> None:
    kept, _ = cut([b"\tffff stray (frame)\n\n" + record(3.0)], now=25.0, native=native)
    assert set(by_bucket(kept)) == {1000.0, 1020.0}


def test_records_outside_since_until_are_skipped(native: bool) -> None:
    """Two pipelines hand over at a moment: each keeps its side of it."""
    kept = Kept(grace=100.0)
    old = PerfRecords(kept.cutter, clock=lambda: 22.0, native=native)
    new = PerfRecords(kept.cutter, native=native)
    old.until = new.since = 10.25
    new.clock = old.clock
    old.feed(STREAM)
    new.feed(STREAM)
    old.finish()
    new.finish()
    kept.cutter.close_all()
    assert by_bucket(kept) == by_bucket(cut([STREAM])[0]), "every record once"


# -- the C speedups cut as the reference does ------------------------------------------

C_PATH = [NATIVE_PATHS[-1]]
"""The C path only (skipped where it was not built, never in CI)."""


Cuts = tuple[list[tuple[int, int, int]], list[int]]


def both_ways(
    text: bytes, now: float, since: float, until: float, size: float, offset: float
) -> tuple[Cuts, Cuts]:
    """``cut_runs`` and the C ``perf_cut_runs`` on the same text and window."""
    cutter = BucketCutter(
        size, offset=offset, grace=1.0, new_collapser=Kept.collapser, emit=lambda *part: None
    )
    module = speedups.choose(True)
    assert module is not None
    native: Cuts = module.perf_cut_runs(text, now, size, offset, MAX_LATE, since, until)
    return cut_runs(text, cutter, now, since, until), native


NUMBER = st.text(alphabet="0123456789", min_size=1, max_size=7)
COMM = st.one_of(
    st.text(alphabet=" ab1/:.-\t", min_size=1, max_size=12),
    st.tuples(NUMBER, NUMBER, NUMBER, NUMBER).map(lambda n: f"x {n[0]}/{n[1]} {n[2]}.{n[3]}:"),
)
TIME = st.one_of(
    st.floats(min_value=0.0, max_value=50.0).map(lambda when: f"{when:.6f}"),
    st.tuples(NUMBER, NUMBER).map(".".join),
    st.text(alphabet="0123456789.:", max_size=30),
)
EVENT = st.tuples(COMM, NUMBER, NUMBER, st.sampled_from([" ", "  ", "\t"]), TIME).map(
    lambda parts: f"{parts[0]} {parts[1]}/{parts[2]}{parts[3]}{parts[4]}: "
)
LINE = st.one_of(
    st.tuples(EVENT, st.sampled_from(["   1001 cpu-clock: ", "1 cycles:", ""])).map("".join),
    st.tuples(EVENT, st.text(alphabet=" 0129x\t\x0b", max_size=6)).map(
        lambda parts: f"{parts[0]}PERF_RECORD_LOST lost {parts[1]}"
    ),
    st.just("\t    55d0c0de1180 work (/opt/burn)"),
    st.just(""),
    st.text(alphabet=" a1/.:\t\rP", max_size=40),
)
BOUND = st.one_of(st.just(-math.inf), st.just(math.inf), st.floats(min_value=-5, max_value=60))


@pytest.mark.parametrize("native", C_PATH)
@settings(max_examples=400, deadline=None)
@given(
    st.lists(LINE, max_size=30).map(lambda lines: "\n".join(lines).encode() + b"\n"),
    st.floats(min_value=0.0, max_value=60.0),
    BOUND,
    BOUND,
    st.sampled_from([10.0, 1.0, 0.3]),
    st.floats(min_value=-1000.0, max_value=1000.0),
)
def test_the_c_cutting_is_the_reference_on_any_text(
    native: bool, text: bytes, now: float, since: float, until: float, size: float, offset: float
) -> None:
    python, c = both_ways(text, now, since, until, size, offset)
    assert c == python


@pytest.mark.parametrize("native", C_PATH)
def test_the_c_cutting_keeps_the_cutters_bounds(native: bool) -> None:
    """Stamps just inside and just outside what the cutter takes as a record's own time
    (``MAX_LATE`` behind the clock, a bucket ahead of it), and the hand-over's bounds."""
    now = MAX_LATE + 20.0
    stamps = (19.999999, 20.0, 25.0, now - 0.5, now, now + 10.0, now + 10.000001)
    text = b"".join(record(when) for when in stamps)
    for since, until in ((-math.inf, math.inf), (20.0, now), (now - 0.5, now + 10.0)):
        python, c = both_ways(text, now, since, until, 10.0, 1000.0)
        assert c == python
        assert python[0], "nothing kept"


def perf_texts() -> list[Path]:
    corpus = [*sorted((CONFORMANCE / "perf").glob("*.txt*")), *sorted((DATA / "perf").glob("*"))]
    return [path for path in corpus if path.is_file() and not path.name.endswith(".folded")]


@pytest.mark.parametrize("native", C_PATH)
def test_the_c_cutting_is_the_reference_on_real_perf_output(native: bool) -> None:
    """Every perf script text of the corpus, with the clock in its middle and a hand-over
    in it: the same runs, the same losses."""
    paths = perf_texts()
    if not paths:
        pytest.skip("no perf script texts (the reference corpus is absent)")
    for path in paths:
        data = path.read_bytes()
        text = gzip.decompress(data) if path.name.endswith(".gz") else data
        times = [float(found.group(1)) for found in HEAD.finditer(text)]
        now = times[len(times) // 2] if times else 0.0
        for since, until in ((-math.inf, math.inf), (now - 1.0, now + 0.5)):
            python, c = both_ways(text, now, since, until, 1.0, 0.25)
            assert c == python, path.name
