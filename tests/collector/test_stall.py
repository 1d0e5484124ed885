"""A stuck perf pipeline told from an idle target, against a fake /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from flamed.collector.stall import StallWatch
from flamed.collector.targets import Resolution

TARGET, RECORD, SCRIPT = 10, 20, 30
TICKS = 100  # USER_HZ on Linux


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.now = 0.0
        for pid in (TARGET, RECORD, SCRIPT):
            self.set(pid, "S", 0.0)

    def set(self, pid: int, state: str, cpu: float, read: int = 0, written: int = 0) -> None:
        (self.root / str(pid)).mkdir(exist_ok=True)
        (self.root / str(pid) / "io").write_text(f"rchar: {read}\nwchar: {written}\n")
        rest = ["1"] * 10 + [str(round(cpu * TICKS)), "0"] + ["0"] * 30
        (self.root / str(pid) / "stat").write_text(f"{pid} (x y) {state} {' '.join(rest)}\n")

    def watch(self, patience: int = 100) -> StallWatch:
        return StallWatch(10.0, 1.0, 99, self.root, patience, clock=lambda: self.now)


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    if __import__("os").sysconf("SC_CLK_TCK") != TICKS:
        pytest.skip("the fake /proc assumes 100 clock ticks a second")
    return FakeProc(tmp_path)


def run(proc: FakeProc, watch: StallWatch, seconds: int, *, output: int = 0,
        cpu_per_second: float = 0.0) -> list[str | None]:  # fmt: skip
    found = []
    for _ in range(seconds):
        proc.now += 1.0
        cpu = proc.now * cpu_per_second
        proc.set(TARGET, "R" if cpu_per_second else "S", cpu)
        found.append(watch.check(output, RECORD, SCRIPT, Resolution("pids", (TARGET,))))
    return found


def test_a_pipeline_that_writes_is_never_stuck(proc: FakeProc) -> None:
    watch = proc.watch()
    for second in range(60):
        proc.now += 1.0
        proc.set(TARGET, "R", proc.now)
        assert watch.check(second * 100, RECORD, SCRIPT, Resolution("pids", (TARGET,))) is None


def test_a_quiet_pipeline_of_an_idle_target_is_not_stuck(proc: FakeProc) -> None:
    assert set(run(proc, proc.watch(), 120)) == {None}


def test_quiet_while_the_target_runs_past_what_the_buffers_hold(proc: FakeProc) -> None:
    found = run(proc, proc.watch(patience=100), 30, cpu_per_second=1.0)  # 99 samples a second
    first = next(i for i, reason in enumerate(found) if reason)
    assert first + 1 == 10, "not before the limit of 10 s"
    assert "while the target ran" in str(found[first])


def test_quiet_is_fine_while_the_buffers_still_hold_the_samples(proc: FakeProc) -> None:
    assert set(run(proc, proc.watch(patience=5000), 40, cpu_per_second=1.0)) == {None}


def test_a_stopped_child_is_stuck_even_with_an_idle_target(proc: FakeProc) -> None:
    proc.set(SCRIPT, "T", 0.0)
    found = run(proc, proc.watch(), 12)
    assert found[:9] == [None] * 9
    assert "perf script stopped" in str(found[9])


def test_a_perf_script_that_reads_nothing_is_stuck(proc: FakeProc) -> None:
    watch = proc.watch()
    assert set(run(proc, watch, 3)) == {None}
    proc.set(RECORD, "S", 0.0, written=4096)  # into the pipe; perf script reads none of it
    found = run(proc, watch, 7)  # seconds 4 to 10: quiet since the watch began, at 0
    assert found[:-1] == [None] * 6
    assert "perf script read nothing" in str(found[-1])


def test_a_perf_script_at_work_is_not_stuck(proc: FakeProc) -> None:
    """No output for 30 s while the target runs, but perf script reads (a backlog)."""
    watch = proc.watch()
    for second in range(1, 30):
        proc.set(RECORD, "S", 0.0, written=4096 * second)
        proc.set(SCRIPT, "S", 0.0, read=4096 * second)
        assert run(proc, watch, 1, cpu_per_second=1.0) == [None]


def test_flamed_s_own_stall_starts_the_quiet_spell_again(proc: FakeProc) -> None:
    proc.set(RECORD, "T", 0.0)
    watch = proc.watch()
    assert set(run(proc, watch, 5)) == {None}
    proc.now += 30.0  # flamed itself did not run for 30 s: the next look starts the spell
    assert set(run(proc, watch, 10)) == {None}
    assert run(proc, watch, 1) != [None], "10 s after that look"
