"""One daemon per state folder (issue 16, item 1): a second `flamed run` exits 1, the first
loses nothing."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collapse.errors import FlamedError
from flamed.daemon.statelock import lock_state_dir
from tests.collector.helpers import build_burn, require_perf
from tests.reliability import start_daemon
from tests.reliability.faults_support import (
    Daemon,
    burn_name,
    command_name,
    free_port,
    poll,
    write_config,
)


def test_a_second_lock_names_the_folder_and_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    held = lock_state_dir(state)
    with pytest.raises(FlamedError) as refused:
        lock_state_dir(state)
    message = str(refused.value)
    assert str(state) in message and f"pid {os.getpid()}" in message and "\n" not in message
    held.release()
    lock_state_dir(state).release()  # free again once released


def second_run(config: Path, listen: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "flamed.daemon.cli", "run", "--config", str(config)]
    return subprocess.run(
        [*command, "--listen", listen], capture_output=True, timeout=30, check=False
    )


def test_a_second_daemon_on_the_same_state_folder_exits_1_in_one_line(tmp_path: Path) -> None:
    first = start_daemon(tmp_path / "one")
    try:
        done = second_run(first.folder / "flamed.toml", f"127.0.0.1:{free_port()}")
        assert done.returncode == 1, done.stderr
        lines = done.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert str(first.state) in lines[0] and f"pid {first.pid}" in lines[0]
        assert first.get("/healthz")[0] == 200
    finally:
        assert first.stop() == 0


# -- with real perf: the first daemon's windows are those of a lone run -----------------------


BUCKET_FILE = re.compile(r"(\d+)-(\d+)\.folded\.gz")


def buckets_on_disk(folder: Path) -> list[tuple[int, int]]:
    found = (BUCKET_FILE.fullmatch(path.name) for path in folder.iterdir())
    return sorted((int(m.group(1)), int(m.group(2))) for m in found if m)


@pytest.fixture
def burner(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_perf()
    binary = build_burn(tmp_path, burn_name())
    proc = subprocess.Popen([str(binary), "120"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.perf
@pytest.mark.slow
def test_the_first_daemon_loses_nothing_to_a_second(
    tmp_path: Path, burner: subprocess.Popen[bytes]
) -> None:
    """What a lone run shows: every bucket on disk, back to back, no sampler restart, no
    perf error logged. Before the lock, the second daemon emptied the first's spool: the
    first logged `perf script exited 255` and lost buckets."""
    port, state, config = free_port(), tmp_path / "state", tmp_path / "flamed.toml"
    write_config(config, port, state, process=command_name(burner))
    first = Daemon(config, port, tmp_path)
    try:
        first.ready()
        poll(lambda: (state / "burn").is_dir() and len(buckets_on_disk(state / "burn")) >= 2,
             "the first daemon's buckets")  # fmt: skip
        done = second_run(config, f"127.0.0.1:{free_port()}")
        assert done.returncode == 1, done.stderr
        assert f"pid {first.pid}" in done.stderr.decode()
        time.sleep(4.0)  # four more buckets of the first daemon
        entry = first.target()
        assert entry["state"] == "running" and entry["restarts"] == 0, entry
        assert first.stop() == 0
    finally:
        first.kill()
    log = first.log_path.read_text(errors="replace")
    assert "perf script exited" not in log and "ERROR" not in log, log
    buckets = buckets_on_disk(state / "burn")
    gaps = [(a, b) for (_, a), (b, _) in itertools.pairwise(buckets) if a != b]
    assert len(buckets) >= 6 and not gaps, buckets
