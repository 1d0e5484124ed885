"""JIT frames named end to end (issue 17): `flamed run` and `flamed record` on real Node.

tests/data/node/late.js spins in ``earlyLeaf``; told to, it compiles ``lateLeaf``
(a function it never had) and spins in that. perf script reads a map once, so
``lateLeaf`` is named only because flamed reads the map itself as it grows.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collapse.folded import read_folded
from tests.collector.helpers import require_perf
from tests.collector.jit import EARLY, LATE, compile_late, excerpt, frames_named, start_node, stop
from tests.daemon.test_run_e2e import Daemon, free_port, get, poll

pytestmark = [pytest.mark.perf, pytest.mark.slow]


@pytest.fixture
def tag() -> str:
    return f"flamedtest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def node(tag: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    require_perf()
    proc = start_node(tag, tmp_path)
    yield proc
    stop(proc)


def test_the_daemon_names_a_function_compiled_after_it_started(
    tmp_path: Path, tag: str, node: subprocess.Popen[bytes]
) -> None:
    port, config = free_port(), tmp_path / "flamed.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[storage]\nstate_dir = {str(tmp_path / "state")!r}\nbucket = "1s"\n'
        f'[[targets]]\nname = "node"\ncmdline = "late.js 90 {tag}$"\nfrequency = 199\n'
    )
    daemon = Daemon(config, port, tmp_path)
    try:
        assert daemon.ready().startswith(b"READY=1")
        poll(lambda: frames_named(daemon.folded("target=node&window=1m"), EARLY) > 0)
        compile_late(node)
        poll(lambda: frames_named(daemon.folded("target=node&window=1m"), LATE) >= 20)
        folded = daemon.folded("target=node&window=1m")
        print(excerpt(folded, LATE))
        status, metrics = get(f"{daemon.base}/metrics")
        assert status == 200
        lines = re.search(rb'^flamed_jit_map_lines_total\{kind="perf-map",target="node"\} (\S+)$',
                          metrics, re.MULTILINE)  # fmt: skip
        assert lines is not None and float(lines.group(1)) > 0, metrics[-2000:]
    finally:
        daemon.kill()


def test_flamed_record_names_a_function_compiled_while_it_records(
    tmp_path: Path, node: subprocess.Popen[bytes]
) -> None:
    out = tmp_path / "node.folded"
    argv = [sys.executable, "-m", "flamed.daemon.cli", "record", "-p", str(node.pid)]
    argv += ["-F", "199", "-d", "6", "-o", str(out)]
    record = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        timer = threading.Timer(3.0, compile_late, (node,))  # perf script has read the map
        timer.start()
        _, errors = record.communicate(timeout=60)
        timer.join()
    finally:
        if record.poll() is None:
            record.kill()
            record.wait()
    assert record.returncode == 0, errors.decode()
    folded = read_folded(out.read_bytes())
    assert frames_named(folded, EARLY) > 0, excerpt(folded, "map]")
    assert frames_named(folded, LATE) > 0, excerpt(folded, "map]")
