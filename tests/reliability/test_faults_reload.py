"""Config reloads against a running daemon with real perf (issue 9, case 14).

Three broken configs (TOML syntax, a bad regular expression, an unknown key)
are each refused with the old config kept running (no sampler restarted); then
a valid one removes a target: its perf stops and its history stays queryable.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
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


def reloads(daemon: Daemon, result: str) -> float:
    return metric(daemon.metrics(), "flamed_config_reloads_total", result=result)


def perf_of(daemon: Daemon, target: str) -> list[int]:
    return perf_records(daemon.pid, target)


BROKEN: dict[str, Callable[[str], str]] = {
    "syntax": lambda text: text + "[[targets]\nname = 'x'\n",
    "regex": lambda text: text.replace('process = "^', 'process = "(^', 1),
    "unknown key": lambda text: text + "colour = 'blue'\n",
}


def test_broken_reloads_keep_the_old_config_and_a_removal_keeps_history(
    tmp_path: Path, burner: subprocess.Popen[bytes]
) -> None:
    name = command_name(burner)
    port, state, config = free_port(), tmp_path / "state", tmp_path / "flamed.toml"
    two = (
        f'[[targets]]\nname = "burn"\nprocess = "^{name}$"\n'
        f'[[targets]]\nname = "again"\npids = [{burner.pid}]\n'
    )
    write_config(config, port, state, targets=two)
    good = config.read_text()
    daemon = Daemon(config, port, tmp_path)
    try:
        daemon.ready()
        text = daemon.metrics()
        assert 'flamed_config_reloads_total{result="error"} 0.0' in text, "no error series at 0"

        def both_sampling() -> bool:
            entries = [daemon.target(t) for t in ("burn", "again")]
            return all(e["state"] == "running" and e["samples_last_minute"] for e in entries)

        poll(both_sampling, "both targets sampling")
        pids = {t: perf_of(daemon, t) for t in ("burn", "again")}
        assert all(len(found) == 1 for found in pids.values()), pids

        refused = 0.0
        for kind, breaks in BROKEN.items():
            config.write_text(breaks(good))
            os.kill(daemon.pid, signal.SIGHUP)
            before = refused
            poll(lambda: reloads(daemon, "error") > before, f"the {kind} reload refused")  # noqa: B023
            refused = reloads(daemon, "error")
            assert {t: perf_of(daemon, t) for t in pids} == pids, f"{kind}: a sampler restarted"
            assert [daemon.target(t)["restarts"] for t in pids] == [0, 0]
        figure("14", "broken reloads refused (syntax, regex, unknown key)", f"{refused:.0f}")
        assert reloads(daemon, "success") == 0
        logged = daemon.logged()
        assert logged.count("config reload refused") >= 3
        assert "invalid TOML" in logged and "bad regular expression" in logged
        assert "unknown key" in logged

        write_config(config, port, state, targets=two.split('[[targets]]\nname = "again"')[0])
        os.kill(daemon.pid, signal.SIGHUP)
        poll(lambda: daemon.names() == ["burn"], "the removal")
        poll(lambda: not perf_of(daemon, "again"), "the removed target's perf to stop")
        assert perf_of(daemon, "burn") == pids["burn"], "the kept target's perf restarted"
        status, body = get(f"{daemon.base}/api/v1/folded?target=again&window=1h")
        assert status == 200 and b"light;work" in body, body[:200]
        poll(lambda: reloads(daemon, "success") >= 1, "the success counted")
        figure(
            "14",
            "reload results in /metrics",
            f"error={refused:.0f} success={reloads(daemon, 'success'):.0f}",
        )
        assert daemon.stop() == 0
    finally:
        daemon.kill()
