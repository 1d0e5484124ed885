"""Windows: the [other] cap, selections, the merge cache, pruning, roll-ups, eviction."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from flamed.collapse.folded import Folded, merge, top
from flamed.daemon.store import (
    MERGE_SLACK,
    OTHER,
    Window,
    cap_stacks,
    make_bucket,
    merge_buckets,
)
from tests.daemon.conftest import T0, folded_of


def bucket(start: float, text: str, size: float = 10.0, max_stacks: int = 100):  # type: ignore[no-untyped-def]
    return make_bucket(start, start + size, folded_of(text), max_stacks)


def test_cap_keeps_the_heaviest_and_sums_the_rest() -> None:
    folded = folded_of("a 5\nb 4\nc 1\nd 1\ne 2\n")
    capped = cap_stacks(folded, 3)
    assert capped.counts == {"a": 5, "b": 4, OTHER: 4}
    assert capped.total() == folded.total()
    assert cap_stacks(folded, 5) is folded


def test_bucket_round_trips_its_profile() -> None:
    folded = folded_of("main;f 3\nmain;g 1.5\n")
    made = make_bucket(T0, T0 + 10, folded, 100)
    assert made.folded() == folded
    assert made.samples == 4  # int of the total, when no sample count is given


def test_window_selects_overlapping_buckets_and_merges() -> None:
    window = Window("a", 100)
    window.add(bucket(T0 + 10, "x;y 2\n"))
    window.add(bucket(T0, "x;y 1\nx;z 1\n"))
    window.add(bucket(T0 + 20, "x;z 5\n"))
    assert [b.start for b in window.buckets] == [T0, T0 + 10, T0 + 20]
    everything = window.select(T0 - 100, T0 + 100)
    assert window.merge(everything).counts == {"x;y": 3, "x;z": 6}
    last = window.select(T0 + 25, T0 + 30)
    assert window.merge(last).counts == {"x;z": 5}
    middle = window.select(T0 + 10, T0 + 20)
    assert [b.start for b in middle.buckets] == [T0 + 10]
    assert window.select(T0 + 40, T0 + 50).buckets == ()


def test_a_bucket_with_the_same_start_is_merged_into_it() -> None:
    window = Window("a", 100)
    window.add(make_bucket(T0, T0 + 10, folded_of("a 1\n"), 100, samples=1))
    window.add(make_bucket(T0, T0 + 10, folded_of("a 2\nb 1\n"), 100, samples=3))
    (only,) = window.buckets
    assert only.folded().counts == {"a": 3, "b": 1} and only.samples == 4
    assert window.stacks() == 2


def test_merge_cache_lasts_until_the_window_changes() -> None:
    window = Window("a", 100)
    window.add(bucket(T0, "a 1\n"))
    selection = window.select(T0, T0 + 10)
    assert window.cached(selection) is None
    merged = window.merge(selection)
    window.remember(selection, merged)
    assert window.cached(window.select(T0, T0 + 10)) is merged
    window.add(bucket(T0 + 10, "a 1\n"))
    assert window.cached(window.select(T0, T0 + 10)) is None


def test_prune_drops_old_buckets_and_their_stacks() -> None:
    window = Window("a", 100)
    window.add(bucket(T0, "old 1\n"))
    window.add(bucket(T0 + 10, "new 1\n"))
    assert window.stacks() == 2
    dropped = window.prune(T0 + 10)
    assert [b.start for b in dropped] == [T0]
    assert window.stacks() == 1 and window.oldest == T0 + 10


profiles = st.dictionaries(
    st.text(alphabet="abc;", min_size=1, max_size=6).filter(lambda s: s.strip(";") == s),
    st.integers(min_value=1, max_value=1000),
    max_size=8,
)


@given(st.lists(profiles, max_size=5))
def test_merging_buckets_is_folded_merge(parts: list[dict[str, int]]) -> None:
    buckets = [
        make_bucket(T0 + i, T0 + i + 1, Folded(dict(p)), 10_000) for i, p in enumerate(parts)
    ]
    expected = merge(Folded(dict(p)) for p in parts)
    assert merge_buckets(buckets, 10_000) == expected


@given(st.lists(profiles, max_size=5), st.integers(min_value=2, max_value=6))
def test_capped_merge_is_top_of_merge(parts: list[dict[str, int]], cap: int) -> None:
    buckets = [make_bucket(T0 + i, T0 + i + 1, Folded(p), 10_000) for i, p in enumerate(parts)]
    whole = merge(Folded(dict(p)) for p in parts)
    got = merge_buckets(buckets, cap)
    assert got.total() == whole.total() and len(got) <= cap
    if len(whole) <= MERGE_SLACK * cap:  # else the running sum was capped on the way
        assert got == (whole if len(whole) <= cap else top(whole, cap - 1))


def test_merged_queries_are_capped_too() -> None:
    window = Window("a", 3)
    window.add(bucket(T0, "a 5\nb 1\n", max_stacks=3))
    window.add(bucket(T0 + 10, "c 4\nd 1\n", max_stacks=3))
    merged = window.merge(window.select(T0, T0 + 20))
    assert merged.counts == {"a": 5, "c": 4, OTHER: 2}


def test_rollup_merges_complete_old_groups_only() -> None:
    window = Window("a", 100)
    base = 1_700_000_400.0  # a multiple of 600
    for i in range(8):
        window.add(make_bucket(base + i * 100, base + (i + 1) * 100, folded_of("x 1\n"), 100, 1))
    window.add(make_bucket(base + 900, base + 1000, folded_of("y 1\n"), 100, 1))
    done = window.rollup(base + 1000, 600)
    ((coarse, members),) = done
    assert (coarse.start, coarse.end, coarse.samples) == (base, base + 600, 6)
    assert coarse.folded().counts == {"x": 6} and len(members) == 6
    assert [b.end - b.start for b in window.buckets] == [600, 100, 100, 100]
    assert window.merge(window.select(0, 2e10)).counts == {"x": 8, "y": 1}
    assert window.rollup(base + 1000, 600) == []  # the second group is not complete yet
    assert window.stacks() == 4


def test_rollup_reads_cold_members_back() -> None:
    """Buckets whose stacks left memory are rolled up from what ``read_cold`` reads back."""
    files: dict[int, Folded] = {}
    window = Window("a", 100, read_cold=lambda cold: files.get(cold.key))
    base = 1_700_000_400.0
    for i in range(6):
        text = f"x 1\nf{i % 2} 2\n"
        made = make_bucket(base + i * 100, base + (i + 1) * 100, folded_of(text), 100, 3)
        files[made.key] = made.folded()
        window.add(made)
    window.evict(base + 300)
    ((coarse, members),) = window.rollup(base + 1000, 600)
    assert (coarse.start, coarse.end, coarse.samples, len(members)) == (base, base + 600, 18, 6)
    assert coarse.folded().counts == {"x": 6, "f0": 6, "f1": 6}
    assert [b.cold for b in window.buckets] == [False]


def test_rollup_leaves_a_group_alone_when_a_cold_member_cannot_be_read() -> None:
    window = Window("a", 100, read_cold=lambda cold: None)
    base = 1_700_000_400.0
    for i in range(6):
        window.add(make_bucket(base + i * 100, base + (i + 1) * 100, folded_of("x 1\n"), 100, 1))
    window.evict(base + 100)
    assert window.rollup(base + 1000, 600) == []
    assert [b.cold for b in window.buckets] == [True] + [False] * 5


def test_rollup_reads_cold_members_one_at_a_time() -> None:
    """A roll-up of cold buckets holds the running (capped) sum and one member read back,
    never every member's stacks at once (60 of them for a 10-minute roll-up). Here the
    members' files hold more stacks than the cap, as after a reload lowered max_stacks."""
    files: dict[int, str] = {}
    window = Window("a", 50, read_cold=lambda cold: folded_of(files[cold.key]))
    base = 1_700_000_400.0
    for i in range(40):
        text = "".join(f"{'main;' * 60}f{i}_{j} 1\n" for j in range(200))
        made = make_bucket(base + i * 15, base + (i + 1) * 15, folded_of(text), 1000)
        files[made.key] = text
        window.add(made)
    window.evict(base + 600)
    member = len(files[window.buckets[0].key])
    tracemalloc.start()
    try:
        ((coarse, members),) = window.rollup(base + 1000, 600)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(members) == 40 and coarse.samples == 8000
    assert peak < 6 * member  # 4 times here; the 40 members held at once, 16 times
