"""perf script's stream cut at its records: times, LOST lines, splits anywhere."""

from __future__ import annotations

import itertools
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamed.collector.records import PerfRecords
from tests.collector.streams import Kept, lost, record

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


def cut(chunks: list[bytes], now: float = 22.0) -> tuple[Kept, list[int]]:
    kept = Kept(grace=100.0)
    losses: list[int] = []
    records = PerfRecords(kept.cutter, on_lost=losses.append, clock=lambda: now)
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
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        kept, losses = cut([STREAM])
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
    kept, losses = cut(chunks)
    whole, whole_losses = cut([STREAM])
    assert by_bucket(kept) == by_bucket(whole)
    assert losses == whole_losses


def test_a_last_record_without_its_blank_line_counts() -> None:
    kept, _ = cut([record(3.0).rstrip(b"\n")])
    assert by_bucket(kept) == {1000.0: {"burn;main;work": 1}}


def test_text_before_any_record_goes_to_the_bucket_of_the_moment() -> None:
    kept, _ = cut([b"\tffff stray (frame)\n\n" + record(3.0)], now=25.0)
    assert set(by_bucket(kept)) == {1000.0, 1020.0}


def test_records_outside_since_until_are_skipped() -> None:
    """Two pipelines hand over at a moment: each keeps its side of it."""
    kept = Kept(grace=100.0)
    old, new = PerfRecords(kept.cutter, clock=lambda: 22.0), PerfRecords(kept.cutter)
    old.until = new.since = 10.25
    new.clock = old.clock
    old.feed(STREAM)
    new.feed(STREAM)
    old.finish()
    new.finish()
    kept.cutter.close_all()
    assert by_bucket(kept) == by_bucket(cut([STREAM])[0]), "every record once"
