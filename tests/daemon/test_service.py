"""The service: chunks in and persisted, retention and roll-ups, reloads (applied directly)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from flamed.daemon.config import load_config
from flamed.daemon.metrics import Metrics
from flamed.daemon.service import Service
from tests.daemon.conftest import T0, TWO_TARGETS, FakeClock, FakeFactory, make_config, wait_for

THIRD = '[[targets]]\nname = "c"\ncmdline = "gunicorn"\n'


def write_config(path: Path, state: Path, targets: str, storage: str = "") -> None:
    path.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\n[storage]\nstate_dir = {str(state)!r}\n'
        f'bucket = "10s"\nretention = "1h"\n{storage}\n{targets}'
    )


def reloads(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value("flamed_config_reloads_total", {"result": result})
    return value or 0.0


async def test_reload_adds_removes_and_changes_targets_without_touching_others(
    tmp_path: Path, factory: FakeFactory
) -> None:
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS)
    metrics = Metrics(CollectorRegistry(), process=False)
    service = Service(
        load_config(str(path)), session_factory=factory, metrics=metrics, config_path=str(path)
    )
    await service.start()
    await wait_for(lambda: factory.running("a", "b"))
    a_session = factory.latest("a")
    changed_b = TWO_TARGETS.replace('"^b$"', '"^bb$"')
    write_config(path, tmp_path / "state", changed_b + THIRD)
    assert await service.reload()
    await wait_for(lambda: factory.running("a", "b", "c"))
    assert factory.latest("a") is a_session and not a_session.stopped.is_set()
    assert factory.latest("b").spec.process == "^bb$"
    assert sorted(service.targets) == ["a", "b", "c"]
    write_config(path, tmp_path / "state", THIRD)
    assert await service.reload()
    assert sorted(service.targets) == ["c"] and sorted(service.windows) == ["c"]
    assert a_session.stopped.is_set()
    assert reloads(metrics, "success") == 2
    await service.stop()


async def test_a_bad_config_is_refused_and_the_running_one_kept(
    tmp_path: Path, factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "flamed.toml"
    write_config(path, tmp_path / "state", TWO_TARGETS)
    metrics = Metrics(CollectorRegistry(), process=False)
    service = Service(
        load_config(str(path)), session_factory=factory, metrics=metrics, config_path=str(path)
    )
    await service.start()
    before = service.config
    path.write_text(path.read_text().replace('"^b$"', '"(b"'))
    assert not await service.reload()
    assert service.config is before and sorted(service.targets) == ["a", "b"]
    assert reloads(metrics, "error") == 1
    assert f"{path}:" in caplog.text and "targets[1].process" in caplog.text
    await service.stop()


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


async def test_buckets_older_than_memory_are_read_from_disk_and_rolled_up_from_it(
    tmp_path: Path,
) -> None:
    """``memory`` shorter than ``rollup_after``: stacks leave memory first, the roll-up reads
    them back from their files later."""
    clock, factory = FakeClock(600 * 3_000_000.0), FakeFactory()
    config = make_config(tmp_path, storage='memory = "1m"\nrollup_after = "10m"\nrollup = "1m"')
    service = Service(config, session_factory=factory, clock=clock)
    await service.start()
    await wait_for(lambda: factory.running("a"))
    start = clock.now - 300
    for i in range(6):
        factory.latest("a").emit(start + i * 10, start + (i + 1) * 10, f"f{i % 2} 1\n", 1)
    await wait_for(lambda: len(list((tmp_path / "a").glob("*.gz"))) == 6)
    service.prune()
    window = service.windows["a"]
    assert [b.cold for b in window.buckets] == [True] * 6 and window.stacks() == 0
    assert window.merge(window.select(0, 2e10)).counts == {"f0": 3, "f1": 3}
    clock.now += 600
    service.prune()  # rolled up from the files
    (coarse,) = window.buckets
    assert (coarse.start, coarse.end, coarse.samples) == (start, start + 60, 6)
    assert window.merge(window.select(0, 2e10)).counts == {"f0": 3, "f1": 3}
    await service.stop()
    assert len(list((tmp_path / "a").glob("*.gz"))) == 1


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
    assert [b.cold for b in window.buckets] == [False] * 3  # not on disk yet: kept whole
    await wait_for(lambda: len(list((tmp_path / "a").glob("*.gz"))) == 3)
    service.prune()
    assert [b.cold for b in window.buckets] == [True, True, False]
    assert window.stacks() == 1
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
