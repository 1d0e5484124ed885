"""The daemon's state directory under pressure (issue 9, cases 7 and 8), with real perf.

Case 7 stops the whole daemon (SIGSTOP) while perf keeps recording: only perf
can bound the spool then, with ``--max-size``. Case 8 puts the state directory
on a small tmpfs and fills it.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.helpers import build_burn, require_perf
from tests.reliability.faults_support import (
    Daemon,
    burn_name,
    command_name,
    figure,
    free_port,
    get,
    metric,
    perf_records,
    poll,
    tree_size,
    write_config,
)

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_perf()
    proc = subprocess.Popen([str(build_burn(tmp_path, burn_name())), "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def started() -> Iterator[list[Daemon]]:
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        daemon.kill()


def sampling(daemon: Daemon, state: Path) -> None:
    def ready() -> bool:
        entry = daemon.target()
        return entry["state"] == "running" and bool(entry["samples_last_minute"])

    poll(ready, "samples from the burner")
    poll(lambda: len(perf_records(state)) == 1, "one perf record")


def bucket_end(path: Path) -> float:
    return int(path.name.split("-")[1].split(".")[0]) / 1000


def bucket_files(state: Path) -> list[Path]:
    return sorted((state / "burn").glob("*.folded.gz")) if (state / "burn").is_dir() else []


# -- case 7 ----------------------------------------------------------------------------------

SPOOL_MAX = 2 << 20
"""The spool bound for the test: 2 MiB over the 10 files perf keeps (~200 KiB each)."""
STALL = 15.0


class SpoolWatch(threading.Thread):
    """Measures the spool's size every 50 ms; keeps the peak."""

    def __init__(self, spool: Path) -> None:
        super().__init__(daemon=True)
        self.spool = spool
        self.done = threading.Event()
        self.peak = 0

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, tree_size(self.spool))


def test_a_stopped_daemon_keeps_its_spool_bounded(
    tmp_path: Path, burner: subprocess.Popen[bytes], started: list[Daemon]
) -> None:
    port, state, config = free_port(), tmp_path / "state", tmp_path / "flamed.toml"
    write_config(config, port, state, frequency=999, process=command_name(burner))
    daemon = Daemon(config, port, tmp_path, session={"spool_max_bytes": SPOOL_MAX})
    started.append(daemon)
    daemon.ready()
    sampling(daemon, state)
    watch = SpoolWatch(state / ".spool")
    watch.start()
    os.kill(daemon.pid, signal.SIGSTOP)
    stopped_at = time.time()
    time.sleep(STALL)
    os.kill(daemon.pid, signal.SIGCONT)
    try:
        poll(lambda: daemon.target()["state"] == "running", "sampling again")

        def counted() -> bool:
            text = daemon.metrics()
            return (
                metric(text, "flamed_chunks_dropped_total", target="burn", reason="spool_full") == 1
            )

        poll(counted, "chunks_dropped_total{reason=spool_full}")
    finally:
        watch.done.set()
        watch.join()
    figure("7", f"peak spool bytes, {STALL:.0f} s daemon stop, bound {SPOOL_MAX}", watch.peak)
    # perf checks --max-size after each write of its ring buffer, so one file may pass
    # its share a little; the spool as a whole stays under the bound.
    assert watch.peak <= SPOOL_MAX, "the spool grew past its bound"
    text = daemon.metrics()
    assert metric(text, "flamed_collector_restarts_total", target="burn", reason="spool_full") == 1
    assert "size limit reached" in daemon.logged() or "spool bound" in daemon.logged()
    url = (
        f"{daemon.base}/api/v1/folded?target=burn&from={stopped_at:.3f}&until={stopped_at + 1:.3f}"
    )
    poll(lambda: b"light;work" in get(url)[1], "the samples of the stop (perf's last file)")
    assert daemon.stop() == 0


# -- case 8 ----------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "state"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (64 << 10))
                out.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def test_a_full_state_directory_is_survived_and_recovered(
    tmp_path: Path, burner: subprocess.Popen[bytes], started: list[Daemon], small_tmpfs: Path
) -> None:
    port, state, config = free_port(), small_tmpfs, tmp_path / "flamed.toml"
    write_config(config, port, state, process=command_name(burner))
    daemon = Daemon(config, port, tmp_path)
    started.append(daemon)
    daemon.ready()
    sampling(daemon, state)
    poll(lambda: len(bucket_files(state)) >= 2, "bucket files")
    filler = fill(state)
    full_at = time.time()
    before = {path.name for path in bucket_files(state)}
    time.sleep(8.0)  # eight buckets on a full disk
    assert daemon.proc.poll() is None, "the daemon died of a full disk"
    assert get(daemon.base + "/healthz")[0] == 200
    text = daemon.metrics()
    errors = metric(text, "flamed_disk_errors_total", op="write", reason="ENOSPC")
    restarts = metric(text, "flamed_collector_restarts_total", target="burn", reason="crash")
    figure("8", "bucket writes failed on the full disk (8 s)", f"{errors:.0f}")
    figure("8", "perf restarts on the full disk (8 s)", f"{restarts:.0f}")
    assert errors + restarts > 0, "the full disk went unnoticed"
    logged = daemon.logged()
    assert logged.count("cannot write bucket files") <= 1, "disk errors logged more than once"
    perf_failures = [line for line in logged.splitlines() if "perf record exited" in line]
    assert len(perf_failures) <= 1, perf_failures

    filler.unlink()
    freed_at = time.time()
    poll(lambda: {p.name for p in bucket_files(state)} - before, "a bucket file after freeing")
    url = f"{daemon.base}/api/v1/folded?target=burn&from={freed_at:.3f}&until=now"
    poll(lambda: b"light;work" in get(url)[1], "samples after the disk was freed")
    written = [
        p for p in bucket_files(state) if int(p.name.split("-")[1].split(".")[0]) / 1000 > full_at
    ]
    figure("8", "bucket files written after space freed", len(written))
    figure("8", "errors logged (per kind: once)", logged.count("cannot write bucket files"))
    assert daemon.stop() == 0
