"""What the sessions read from /proc: CPU time, state, the machine's busy time."""

from __future__ import annotations

import os
from pathlib import Path

from flamed.collector.procfs import cpu_seconds, machine_cpu, stopped, target_cpu
from flamed.collector.targets import Resolution


def test_cpu_time_and_state_of_real_processes() -> None:
    me = Path("/proc")
    before = cpu_seconds(me, os.getpid())
    deadline = os.times().elapsed + 0.3
    while os.times().elapsed < deadline:
        pass
    assert cpu_seconds(me, os.getpid()) > before
    assert not stopped(me, os.getpid())
    assert cpu_seconds(me, 2**22 + 17) == 0.0 and not stopped(me, 2**22 + 17)
    assert target_cpu(Resolution("pids", (os.getpid(),)), me) == cpu_seconds(me, os.getpid())
    assert target_cpu(Resolution("all"), me) == machine_cpu(me) > 0


def test_machine_cpu_counts_work_not_idle(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    #                       user nice system idle iowait irq softirq steal
    (tmp_path / "stat").write_text(f"cpu  {ticks} 0 {ticks} {50 * ticks} {ticks} 0 {ticks} 0 0 0\n")
    assert machine_cpu(tmp_path) == 3.0
    assert machine_cpu(tmp_path / "none") == 0.0
