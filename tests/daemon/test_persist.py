"""Bucket files: the format, loading at start, and what a crash may leave behind."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest

from flamed.daemon.persist import DiskStore
from flamed.daemon.store import Window, make_bucket
from tests.daemon.conftest import T0, folded_of
from tests.daemon.test_store import bucket


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


def test_load_drops_buckets_inside_a_rolled_up_one(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    disk.write("a", make_bucket(T0, T0 + 60, folded_of("x 6\n"), 100, 6))
    disk.write("a", make_bucket(T0, T0 + 10, folded_of("x 1\n"), 100, 1))  # left by a crash
    disk.write("a", make_bucket(T0 + 10, T0 + 20, folded_of("x 1\n"), 100, 1))
    disk.write("a", make_bucket(T0 + 60, T0 + 70, folded_of("y 1\n"), 100, 1))
    loaded = disk.load("a", 0, 100)
    assert [(b.start, b.end) for b in loaded] == [(T0, T0 + 60), (T0 + 60, T0 + 70)]
    assert len(list((tmp_path / "a").glob("*.gz"))) == 2


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
