"""The daemon under pressure (issue 9, cases 7 and 8), with real perf.

Case 7 stops the whole daemon (SIGSTOP) while perf keeps recording: perf
script blocks on its stdout, perf record on the pipe, and the kernel drops
samples (counted from perf's LOST records) instead of anything growing. Case 8
puts the state directory on a small tmpfs and fills it.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collector.procfs import resident_bytes
from tests.collector.helpers import build_burn, require_perf
from tests.collector.live import PROC, Resident
from tests.reliability.faults_support import (
    Daemon,
    burn_name,
    command_name,
    figure,
    free_port,
    get,
    metric,
    perf_children,
    perf_records,
    poll,
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


def sampling(daemon: Daemon) -> None:
    def ready() -> bool:
        entry = daemon.target()
        return entry["state"] == "running" and bool(entry["samples_last_minute"])

    poll(ready, "samples from the burner")
    poll(lambda: len(perf_records(daemon.pid)) == 1, "one perf record")


def bucket_end(path: Path) -> float:
    return int(path.name.split("-")[1].split(".")[0]) / 1000


def bucket_files(state: Path) -> list[Path]:
    return sorted((state / "burn").glob("*.folded.gz")) if (state / "burn").is_dir() else []


# -- case 7 ----------------------------------------------------------------------------------

STALL = 15.0


def test_a_stopped_daemon_loses_samples_in_the_kernel_not_memory(
    tmp_path: Path, burner: subprocess.Popen[bytes], started: list[Daemon]
) -> None:
    port, state, config = free_port(), tmp_path / "state", tmp_path / "flamed.toml"
    everything = '[[targets]]\nname = "burn"\nall = true\n'  # ~300 KB/s of perf output
    write_config(config, port, state, frequency=999, targets=everything)
    daemon = Daemon(config, port, tmp_path)
    started.append(daemon)
    daemon.ready()
    sampling(daemon)
    pids = {
        "daemon": daemon.pid,
        "perf record": perf_records(daemon.pid)[0],
        "perf script": perf_children(daemon.pid, "script")[0],
    }
    before = {name: resident_bytes(PROC, pid) for name, pid in pids.items()}
    watch = Resident(pids)
    watch.start()
    os.kill(daemon.pid, signal.SIGSTOP)
    stopped_at = time.time()
    time.sleep(STALL)
    os.kill(daemon.pid, signal.SIGCONT)
    try:
        poll(lambda: daemon.target()["state"] == "running", "sampling again")
        poll(lambda: metric(daemon.metrics(), "flamed_samples_lost_total", target="burn") > 0,
             "flamed_samples_lost_total")  # fmt: skip
        time.sleep(2.0)
    finally:
        watch.done.set()
        watch.join()
    lost = metric(daemon.metrics(), "flamed_samples_lost_total", target="burn")
    grown = {name: (watch.peak[name] - before[name]) >> 20 for name in pids}
    figure("7", f"samples lost in the kernel while the daemon was stopped {STALL:.0f} s "
           "(whole machine, 999 Hz)", f"{lost:.0f}")  # fmt: skip
    figure("7", "RSS growth meanwhile, MiB", grown)
    # The daemon and perf record are what would hold a stalled reader's samples; perf script,
    # blocked on its full pipe, holds none, but grows by the symbols of each new process it
    # meets afterwards (tens of MiB a minute on a machine starting many): bounded loosely.
    assert grown["daemon"] < 32 and grown["perf record"] < 32, grown
    assert grown["perf script"] < 160, grown
    assert daemon.target()["samples_lost"] == lost
    text = daemon.metrics()
    assert metric(text, "flamed_collector_restarts_total", target="burn", reason="stalled") == 0
    url = (
        f"{daemon.base}/api/v1/folded?target=burn&from={stopped_at:.3f}&until={stopped_at + 1:.3f}"
    )
    poll(lambda: b"light;work" in get(url)[1], "the samples perf held through the stop")
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
    sampling(daemon)
    poll(lambda: len(bucket_files(state)) >= 2, "bucket files")
    filler = fill(state)
    full_at = time.time()
    before = {path.name for path in bucket_files(state)}
    time.sleep(8.0)  # eight buckets on a full disk
    assert daemon.proc.poll() is None, "the daemon died of a full disk"
    assert get(daemon.base + "/healthz")[0] == 200
    text = daemon.metrics()
    errors = metric(text, "flamed_disk_errors_total", op="write", reason="ENOSPC")
    restarts = daemon.target()["restarts"]
    figure("8", "bucket writes failed on the full disk (8 s)", f"{errors:.0f}")
    figure("8", "perf restarts on the full disk (8 s)", restarts)
    assert errors > 0, "the full disk went unnoticed"
    assert restarts == 0, "perf writes nothing to disk: it has no reason to restart"
    logged = daemon.logged()
    assert logged.count("cannot write bucket files") <= 1, "disk errors logged more than once"

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
