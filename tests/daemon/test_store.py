"""Windows, the [other] cap, the merge cache, bucket files, retention, restarts."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamed.collapse.folded import Folded, merge, top
from flamed.daemon.service import Service
from flamed.daemon.store import (
    MERGE_SLACK,
    OTHER,
    DiskStore,
    Window,
    cap_stacks,
    make_bucket,
    merge_buckets,
)
from tests.daemon.conftest import T0, FakeClock, FakeFactory, folded_of, make_config, wait_for


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


async def test_a_late_part_is_added_to_its_bucket_in_memory_and_on_disk(tmp_path: Path) -> None:
    """The sampler hands out a sample read after its bucket as a chunk of the same range."""
    clock, factory = FakeClock(), FakeFactory()
    service = Service(make_config(tmp_path), session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a"))
    factory.latest("a").emit(T0 - 10, T0, "main;f 2\n", samples=2)
    factory.latest("a").emit(T0 - 10, T0, "main;f 1\nmain;g 1\n", samples=2)  # the late part
    window = service.windows["a"]
    (only,) = window.buckets
    assert only.folded().counts == {"main;f": 3, "main;g": 1} and only.samples == 4
    await service.stop()
    (path,) = (tmp_path / "a").glob("*.folded.gz")
    assert gzip.decompress(path.read_bytes()).endswith(b"main;f 3\nmain;g 1\n")


def test_a_late_part_of_a_cold_bucket_reads_it_back(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    window = Window("a", 100, read_cold=lambda cold: disk.read("a", cold))
    first = bucket(T0, "x 2\n")
    disk.write("a", first)
    window.add(first)
    window.evict(T0 + 20)
    assert window.buckets[0].cold
    merged = window.add(bucket(T0, "x 1\ny 1\n"))
    assert not merged.cold and merged.folded().counts == {"x": 3, "y": 1}


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


def test_disk_round_trip_keeps_counts_and_samples(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    made = make_bucket(T0, T0 + 10, folded_of("main;f 3\nmain;g 0.5\n"), 100, samples=7)
    disk.write("a", made)
    files = list((tmp_path / "a").iterdir())
    assert [f.name for f in files] == [made.file_name()]
    text = gzip.decompress(files[0].read_bytes()).decode()
    assert text.splitlines()[1:] == ["main;f 3", "main;g 0.5"]
    (loaded,) = disk.load("a", T0 - 1, 100)
    assert loaded.folded() == made.folded()
    assert (loaded.start, loaded.end, loaded.samples) == (T0, T0 + 10, 7)


def test_load_skips_corrupt_files_and_deletes_expired_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = DiskStore(tmp_path)
    disk.write("a", bucket(T0, "old 1\n"))
    disk.write("a", bucket(T0 + 100, "new 1\n"))
    corrupt = tmp_path / "a" / f"{int((T0 + 200) * 1000)}-{int((T0 + 210) * 1000)}.folded.gz"
    corrupt.write_bytes(b"\x1f\x8bnot really gzip")
    leftover = tmp_path / "a" / ".abc.tmp"
    leftover.write_bytes(b"half a write")
    with caplog.at_level(logging.WARNING):
        loaded = disk.load("a", T0 + 50, 100)
    assert [b.folded().counts for b in loaded] == [{"new": 1}]
    assert "skipping unreadable bucket file" in caplog.text
    assert not leftover.exists()
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([bucket(T0 + 100, "new 1\n").file_name(), corrupt.name])


async def test_service_persists_buckets_and_a_restart_keeps_them(tmp_path: Path) -> None:
    clock, factory = FakeClock(), FakeFactory()
    config = make_config(tmp_path)
    service = Service(config, session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a"))
    factory.latest("a").emit(T0 - 20, T0 - 10, "main;f 2\n", samples=2)
    factory.latest("a").emit(T0 - 10, T0, "main;g 1\n", samples=1)
    await service.stop()
    assert len(list((tmp_path / "a").glob("*.folded.gz"))) == 2

    again = Service(config, session_factory=FakeFactory(), clock=clock)
    await again.start()
    await wait_for(lambda: not again.loading)
    window = again.windows["a"]
    assert window.merge(window.select(T0 - 60, T0)).counts == {"main;f": 2, "main;g": 1}
    assert again.describe("a")["samples_last_minute"] == 3
    await again.stop()


async def test_retention_deletes_from_memory_and_disk(tmp_path: Path) -> None:
    clock, factory = FakeClock(), FakeFactory()
    service = Service(make_config(tmp_path), session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a"))
    factory.latest("a").emit(T0 - 10, T0, "old 1\n")
    await wait_for(lambda: len(list((tmp_path / "a").glob("*.gz"))) == 1)
    clock.advance(3600 + 60)
    factory.latest("a").emit(clock.now - 10, clock.now, "new 1\n")
    service.prune()
    window = service.windows["a"]
    assert [b.folded().counts for b in window.buckets] == [{"new": 1}]
    kept = [window.buckets[0].file_name()]
    await wait_for(lambda: [p.name for p in (tmp_path / "a").glob("*.gz")] == kept)
    await service.stop()


async def test_stale_chunks_are_dropped_and_counted(tmp_path: Path) -> None:
    clock, factory = FakeClock(), FakeFactory()
    service = Service(make_config(tmp_path), session_factory=factory, clock=clock, persist=False)
    await service.start()
    await wait_for(lambda: factory.running("a", "b"))
    factory.latest("a").emit(T0 - 7200, T0 - 7190, "ancient 1\n")
    assert service.windows["a"].buckets == []
    reading = next(r for r in service.readings() if r.target == "a")
    assert reading.dropped == {"stale": 1}
    await service.stop()


async def test_a_failing_session_is_restarted_and_reported(tmp_path: Path) -> None:
    from flamed.collapse.errors import ProfilerError

    class Failing(FakeFactory):
        def __call__(self, spec, **kwargs):  # type: ignore[no-untyped-def]
            session = super().__call__(spec, **kwargs)
            if len(self.made) <= 2 and spec.name == "a":
                session.fail_with = ProfilerError("perf: permission denied")
            return session

    factory = Failing()
    service = Service(make_config(tmp_path), session_factory=factory, persist=False)
    await service.start()
    await wait_for(lambda: factory.running("b"))
    assert service.ready() == (False, "not sampling: a")
    await wait_for(lambda: service.targets["a"].restarts["error"] >= 1, timeout=20)
    described = service.describe("a")
    assert described["restarts"] >= 1
    await service.stop()


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


async def test_service_rolls_up_old_buckets_on_disk_and_reloads_them(tmp_path: Path) -> None:
    clock, factory = FakeClock(600 * 3_000_000.0), FakeFactory()
    config = make_config(tmp_path, storage='rollup_after = "10m"\nrollup = "1m"')
    service = Service(config, session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a"))
    start = clock.now - 1200
    for i in range(12):
        factory.latest("a").emit(start + i * 10, start + (i + 1) * 10, f"f{i % 2} 1\n", 1)
    service.prune()
    spans = [b.end - b.start for b in service.windows["a"].buckets]
    assert spans == [60, 60]
    await service.stop()
    names = sorted(p.name for p in (tmp_path / "a").glob("*.gz"))
    assert names == sorted(b.file_name() for b in service.windows["a"].buckets)
    again = Service(config, session_factory=FakeFactory(), clock=clock)
    await again.start()
    await wait_for(lambda: not again.loading)
    window = again.windows["a"]
    assert window.merge(window.select(0, 2e10)).counts == {"f0": 6, "f1": 6}
    assert again.describe("a")["oldest"] == start
    await again.stop()


def test_load_drops_buckets_inside_a_rolled_up_one(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    disk.write("a", make_bucket(T0, T0 + 60, folded_of("x 6\n"), 100, 6))
    disk.write("a", make_bucket(T0, T0 + 10, folded_of("x 1\n"), 100, 1))  # left by a crash
    disk.write("a", make_bucket(T0 + 10, T0 + 20, folded_of("x 1\n"), 100, 1))
    disk.write("a", make_bucket(T0 + 60, T0 + 70, folded_of("y 1\n"), 100, 1))
    loaded = disk.load("a", 0, 100)
    assert [(b.start, b.end) for b in loaded] == [(T0, T0 + 60), (T0 + 60, T0 + 70)]
    assert len(list((tmp_path / "a").glob("*.gz"))) == 2


async def test_old_buckets_leave_memory_but_queries_still_see_them(tmp_path: Path) -> None:
    clock, factory = FakeClock(600 * 3_000_000.0), FakeFactory()
    config = make_config(tmp_path, storage='rollup_after = "10m"\nrollup = "1m"')
    service = Service(config, session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a"))
    start = clock.now - 1800
    for i in range(12):
        factory.latest("a").emit(start + i * 10, start + (i + 1) * 10, f"f{i % 2} 1\n", 1)
    factory.latest("a").emit(clock.now - 10, clock.now, "recent 1\n", 1)
    service.prune()
    window = service.windows["a"]
    assert [b.cold for b in window.buckets] == [True, True, False]
    assert window.stacks() == 1
    await wait_for(lambda: len(list((tmp_path / "a").glob("*.gz"))) == 3)
    everything = window.merge(window.select(0, 2e10))
    assert everything.counts == {"f0": 6, "f1": 6, "recent": 1}
    await service.stop()
    again = Service(config, session_factory=FakeFactory(), clock=clock)
    await again.start()
    await wait_for(lambda: not again.loading)
    window = again.windows["a"]
    assert [b.cold for b in window.buckets] == [True, True, False]
    assert [b.samples for b in window.buckets] == [6, 6, 1]
    assert window.merge(window.select(0, 2e10)) == everything
    await again.stop()


def test_rollup_leaves_cold_buckets_alone() -> None:
    window = Window("a", 100)
    base = 1_700_000_400.0
    for i in range(6):
        window.add(make_bucket(base + i * 100, base + (i + 1) * 100, folded_of("x 1\n"), 100, 1))
    window.evict(base + 300)
    ((coarse, members),) = window.rollup(base + 1000, 600)  # only the three still in memory
    assert (coarse.start, coarse.end, len(members)) == (base + 300, base + 600, 3)
    assert [b.cold for b in window.buckets] == [True, True, True, False]
    assert window.rollup(base + 1000, 600) == []
