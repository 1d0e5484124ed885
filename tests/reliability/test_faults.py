"""Faults against a running daemon with real perf (issue 9, cases 3, 4 and 9).

Each test starts `flamed run` as a child process against a CPU-burning C
program, injects one fault from outside (SIGKILL or SIGSTOP of perf record or
of perf script, SIGKILL of the daemon) and checks what the daemon shows
afterwards. Durations are measured and recorded as figures (see README.md),
never asserted.
"""

from __future__ import annotations

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
    perf_children,
    perf_records,
    poll,
    stat_fields,
    write_config,
    zombies_of,
)

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_perf()
    binary = build_burn(tmp_path, burn_name())
    proc = subprocess.Popen([str(binary), "300"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def daemon_at(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Daemons a test started; killed (and continued) if the test left them running."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def start_daemon(
    tmp_path: Path,
    started: list[Daemon],
    burner: subprocess.Popen[bytes],
    bucket: str = "1s",
    **session: object,
) -> tuple[Daemon, Path]:
    port, state, config = free_port(), tmp_path / "state", tmp_path / "flamed.toml"
    write_config(config, port, state, bucket=bucket, process=command_name(burner))
    daemon = Daemon(config, port, tmp_path, session=dict(session) if session else None)
    started.append(daemon)
    daemon.ready()
    return daemon, state


def sampling(daemon: Daemon, what: str = "record") -> int:
    """Wait until the target runs with one pipeline and has samples; the pid of its
    perf record (or perf script)."""

    def ready() -> bool:
        entry = daemon.target()
        return entry["state"] == "running" and int(str(entry["samples_last_minute"])) > 0

    poll(ready, "samples from the burner")
    poll(lambda: len(perf_children(daemon.pid, what)) == 1, f"one perf {what}")
    (pid,) = perf_children(daemon.pid, what)
    return pid


def new_perf(daemon: Daemon, old: int, what: str = "record") -> int:
    found: list[int] = []

    def check() -> bool:
        found[:] = [pid for pid in perf_children(daemon.pid, what) if pid != old]
        return bool(found)

    poll(check, f"a new perf {what}", step=0.02)
    return found[0]


def samples_after(daemon: Daemon, since: float) -> bool:
    if time.time() < since + 0.5:
        return False
    status, body = get(f"{daemon.base}/api/v1/folded?target=burn&from={since:.3f}&until=now")
    assert status == 200, body
    return b"light;work" in body


# -- case 3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["record", "script"])
def test_sigkilled_perf_is_restarted_within_a_bucket(
    what: str, tmp_path: Path, burner: subprocess.Popen[bytes], daemon_at: list[Daemon]
) -> None:
    daemon, _state = start_daemon(tmp_path, daemon_at, burner, bucket="2s")
    old = sampling(daemon, what)
    time.sleep(6.5)  # perf has run well for 3 buckets: it is restarted without a back-off
    killed_at = time.time()
    scraper = Scraper(daemon.base)
    scraper.start()
    started = time.monotonic()
    os.kill(old, signal.SIGKILL)
    new = new_perf(daemon, old, what)
    latency = time.monotonic() - started
    scraper.done.set()
    scraper.join()
    figure("3", f"restart latency after SIGKILL of perf {what} (bucket 2 s)", f"{latency:.3f} s")
    assert scraper.results and all(status == 200 for status, _ in scraper.results)

    poll(lambda: daemon.target()["restarts"] == 1, "the restart in /api/v1/targets")
    assert daemon.target()["state"] == "running"
    assert f"perf {what} was killed by signal 9" in str(daemon.target()["last_error"])

    def counted() -> bool:  # /metrics is rendered at most once a second
        text = daemon.metrics()
        return metric(text, "flamed_collector_restarts_total", target="burn", reason="crash") == 1

    poll(counted, "restarts_total{reason=crash} = 1")
    assert metric(daemon.metrics(), "flamed_collector_up", target="burn") == 1
    # Restarted at once, not after a back-off: the sampler had been running well.
    assert "restarting now" in daemon.logged()
    assert stat_fields(old) is None, "the killed perf was not reaped"
    zombies = zombies_of(daemon.pid)
    figure("3", "zombies after the restart", len(zombies))
    assert zombies == []
    assert perf_children(daemon.pid, what) == [new]
    assert len(perf_records(daemon.pid)) == len(perf_children(daemon.pid, "script")) == 1
    poll(lambda: samples_after(daemon, killed_at + 2.0), "samples after the restart")
    entry = daemon.target()
    assert killed_at - 1 <= float(str(entry["last_error_time"])) <= time.time(), entry
    poll(lambda: daemon.target()["last_error_past"] is True, "the error marked as past")
    assert daemon.stop() == 0


# -- case 4 ----------------------------------------------------------------------------------


class Scraper(threading.Thread):
    """Scrapes /metrics in a loop and keeps each answer's status and latency."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.done = threading.Event()
        self.results: list[tuple[int, float]] = []

    def run(self) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            status, _ = get(self.base + "/metrics")
            self.results.append((status, time.monotonic() - started))
            time.sleep(0.05)

    def p99(self) -> float:
        times = sorted(seconds for _, seconds in self.results)
        return times[min(len(times) - 1, int(len(times) * 0.99))]


@pytest.mark.parametrize("what", ["record", "script"])
def test_sigstopped_perf_is_detected_and_restarted(
    what: str, tmp_path: Path, burner: subprocess.Popen[bytes], daemon_at: list[Daemon]
) -> None:
    daemon, _state = start_daemon(tmp_path, daemon_at, burner, bucket="1s")
    old = sampling(daemon, what)
    scraper = Scraper(daemon.base)
    scraper.start()
    started = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    try:
        new = new_perf(daemon, old, what)
    finally:
        scraper.done.set()
        scraper.join()
        with_old = stat_fields(old)
        if with_old is not None:
            os.kill(old, signal.SIGCONT)
    detected = time.monotonic() - started
    figure(
        "4",
        f"detection latency of a SIGSTOPped perf {what} (bucket 1 s, stall 10 s)",
        f"{detected:.2f} s",
    )
    figure("4", f"/metrics p99 while perf {what} was stopped", f"{scraper.p99() * 1000:.1f} ms")
    figure("4", f"/metrics scrapes while perf {what} was stopped", len(scraper.results))
    assert with_old is None, "the stopped perf was left behind"
    assert scraper.results and all(status == 200 for status, _ in scraper.results)

    def counted() -> bool:  # /metrics is rendered at most once a second
        text = daemon.metrics()
        return metric(text, "flamed_collector_restarts_total", target="burn", reason="stalled") == 1

    poll(counted, "restarts_total{reason=stalled} = 1")
    assert f"perf {what} stopped, no output for" in daemon.logged()
    poll(lambda: daemon.target()["state"] == "running", "running again")
    assert perf_children(daemon.pid, what) == [new]
    assert zombies_of(daemon.pid) == []
    assert daemon.stop() == 0


# -- case 9 ----------------------------------------------------------------------------------


def bucket_ends(folder: Path) -> list[float]:
    ends = []
    for path in folder.glob("*.folded.gz"):
        ends.append(int(path.name.split("-")[1].split(".")[0]) / 1000)
    return sorted(ends)


def test_sigkilled_daemon_leaves_no_perf(
    tmp_path: Path, burner: subprocess.Popen[bytes], daemon_at: list[Daemon]
) -> None:
    daemon, state = start_daemon(tmp_path, daemon_at, burner, bucket="2s")
    pair = [sampling(daemon, "record"), sampling(daemon, "script")]
    poll(lambda: len(bucket_ends(state / "burn")) >= 2, "bucket files on disk")
    time.sleep(1.0)  # mid-bucket
    killed_at = time.time()
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait()

    def alive() -> list[int]:
        return [pid for pid in pair if (fields := stat_fields(pid)) and fields[0] != "Z"]

    poll(lambda: not alive(), "perf record and perf script to die with the daemon", timeout=10)
    figure("9", "perf processes left after SIGKILL of the daemon", len(alive()))
    newest = bucket_ends(state / "burn")[-1]
    lost = (killed_at - newest) / 2.0
    figure("9", "buckets lost by SIGKILL of the daemon (2 s buckets)", f"{lost:.2f}")
    assert lost <= 2.0, "more than the bucket in flight and the one being folded were lost"

    again, _ = start_daemon(tmp_path, daemon_at, burner, bucket="2s")
    sampling(again)
    assert again.target()["oldest"] is not None and float(str(again.target()["oldest"])) < newest
    assert again.stop() == 0
    assert not perf_children(again.pid, "record") and not alive()
