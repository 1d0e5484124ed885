"""Buckets cut by each sample's own time: boundaries, completion, late samples, bounds."""

from __future__ import annotations

from flamed.collector.buckets import MAX_OPEN
from tests.collector.streams import Kept, record

# Stamps are "monotonic" seconds; wall = stamp + 1000, so stamp 10.0 is wall 1010.0.


def test_a_sample_just_before_a_boundary_is_in_the_earlier_bucket() -> None:
    kept = Kept()
    cutter = kept.cutter
    now = 25.0
    cutter.add(cutter.index(9.999999, now), record(9.999999, ("before", "main")))
    cutter.add(cutter.index(10.0, now), record(10.0, ("after", "main")))
    cutter.close_all()
    assert kept.ranges() == [(1000.0, 1010.0, False), (1010.0, 1020.0, False)]
    assert kept.handed[0].folded.counts == {"burn;main;before": 1}
    assert kept.handed[1].folded.counts == {"burn;main;after": 1}


def test_buckets_are_aligned_on_the_wall_clock() -> None:
    kept = Kept(size=10.0, offset=1003.5)  # wall = stamp + 1003.5
    cutter = kept.cutter
    assert cutter.index(6.4, 7.0) == 100  # wall 1009.9: [1000, 1010)
    assert cutter.index(6.5, 7.0) == 101  # wall 1010.0


def test_a_bucket_is_complete_when_a_later_sample_comes() -> None:
    kept = Kept()
    cutter = kept.cutter
    cutter.add(cutter.index(1.0, 1.0), record(1.0))
    cutter.add(cutter.index(9.0, 9.0), record(9.0))
    assert kept.handed == []
    cutter.add(cutter.index(10.5, 10.5), record(10.5))
    assert kept.ranges() == [(1000.0, 1010.0, False)]
    assert kept.handed[0].folded.total() == 2


def test_an_idle_target_s_bucket_is_handed_out_after_the_grace() -> None:
    kept = Kept(grace=2.0)
    cutter = kept.cutter
    cutter.add(cutter.index(3.0, 3.0), record(3.0))
    cutter.advance(11.9)  # bucket ends at stamp 10, grace 2 s
    assert kept.handed == []
    cutter.advance(12.0)
    assert kept.ranges() == [(1000.0, 1010.0, False)]
    cutter.advance(100.0)
    assert len(kept.handed) == 1, "nothing is handed out twice, empty buckets are not made"


def test_a_late_sample_is_added_to_its_bucket_as_a_late_part() -> None:
    kept = Kept(grace=2.0)
    cutter = kept.cutter
    cutter.add(cutter.index(3.0, 3.0), record(3.0))
    cutter.advance(12.5)
    cutter.add(cutter.index(9.5, 13.0), record(9.5, ("late", "main")))
    cutter.add(cutter.index(13.0, 13.0), record(13.0))
    cutter.advance(13.1)
    assert kept.ranges() == [(1000.0, 1010.0, False), (1000.0, 1010.0, True)]
    assert kept.handed[1].folded.counts == {"burn;main;late": 1}
    cutter.close_all()
    assert kept.ranges()[-1] == (1010.0, 1020.0, False)


def test_stamps_far_from_the_clock_go_to_the_bucket_of_the_moment() -> None:
    kept = Kept()
    cutter = kept.cutter
    now = 5000.0
    here = cutter.index(None, now)
    assert cutter.index(now + 3600, now) == here, "from the future"
    assert cutter.index(now - 7200, now) == here, "older than an hour"
    assert cutter.index(now - 600, now) == here - 60, "ten minutes late is still its own"


def test_buckets_and_late_parts_held_at_once_are_bounded() -> None:
    kept = Kept()
    cutter = kept.cutter

    def send_back_in_time() -> None:  # each stamp opens a bucket of its own
        for back in range(MAX_OPEN + 5):
            stamp = 5000.0 - 10 * back
            cutter.add(cutter.index(stamp, 5000.0), record(stamp))
            assert len(cutter.open) <= MAX_OPEN and len(cutter.late) <= MAX_OPEN

    send_back_in_time()
    cutter.close_all()
    assert sum(handed.folded.total() for handed in kept.handed) == MAX_OPEN + 5
    kept.handed.clear()
    send_back_in_time()  # all of them late now
    cutter.close_all()
    assert all(handed.late for handed in kept.handed)
    assert sum(handed.folded.total() for handed in kept.handed) == MAX_OPEN + 5
