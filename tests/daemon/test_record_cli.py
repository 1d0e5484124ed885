"""`flamed record` as a user runs it: real perf on a small C program, errors in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flamed.collapse.folded import read_folded
from tests.collector.helpers import build_burn, heavy_light_ratio, require_perf, weight
from tests.conftest import run_flamed


@pytest.fixture
def burning(tmp_path: Path) -> Iterator[int]:
    proc = subprocess.Popen([str(build_burn(tmp_path)), "120"])
    yield proc.pid
    proc.kill()
    proc.wait()


def one_line_error(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode()
    assert done.returncode != 0
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.perf
def test_record_pid_to_folded(tmp_path: Path, burning: int) -> None:
    require_perf()
    out = tmp_path / "out.folded"
    done = run_flamed("record", "-p", str(burning), "-F", "499", "-d", "4", "-o", str(out))
    assert done.returncode == 0, done.stderr.decode()
    folded = read_folded(out.read_bytes())
    assert 2.0 <= heavy_light_ratio(folded) <= 4.5
    assert all(stack.startswith("flamedburn;") for stack in folded)


@pytest.mark.perf
def test_record_output_is_readable_by_others_as_a_redirect_would_be(
    tmp_path: Path, burning: int
) -> None:
    """`sudo flamed record ... -o x.svg`: the user opens the file (mode 0666 less the umask)."""
    require_perf()
    out = tmp_path / "x.svg"
    command = [sys.executable, "-m", "flamed.daemon.cli", "record", "-p", str(burning)]
    done = subprocess.run(
        [*command, "-d", "3", "-o", str(out)], capture_output=True, umask=0o022, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert out.stat().st_mode & 0o777 == 0o644


@pytest.mark.perf
def test_record_svg_and_stdout(tmp_path: Path, burning: int) -> None:
    require_perf()
    svg = tmp_path / "out.svg"
    done = run_flamed("record", "--cmdline", "flamedburn 120", "-d", "2", "-o", str(svg))
    assert done.returncode == 0, done.stderr.decode()
    text = svg.read_text()
    assert "<svg" in text and "heavy" in text and "flamed record: command line" in text
    done = run_flamed("record", "--process", "^flamedburn$", "-d", "2", "-o", "-")
    assert done.returncode == 0, done.stderr.decode()
    assert weight(read_folded(done.stdout), "heavy") > 0


@pytest.mark.perf
def test_ctrl_c_stops_early_and_still_writes(tmp_path: Path, burning: int) -> None:
    require_perf()
    out = tmp_path / "out.folded"
    argv = [sys.executable, "-m", "flamed.daemon.cli", "-v", "record", "-p", str(burning)]
    proc = subprocess.Popen([*argv, "-o", str(out)], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:
        if b"perf record started" in line:
            break
    time.sleep(3)  # some samples to write (perf's own start-up is slow on a loaded machine)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert weight(read_folded(out.read_bytes()), "heavy") > 0


@pytest.mark.perf
def test_record_ends_when_the_process_exits(tmp_path: Path) -> None:
    require_perf()
    burn = subprocess.Popen([str(build_burn(tmp_path)), "4"])
    try:
        done = run_flamed("record", "-p", str(burn.pid), "-F", "199")  # no -d: until it exits
    finally:
        burn.kill()
        burn.wait()
    assert done.returncode == 0, done.stderr.decode()
    assert weight(read_folded(done.stdout), "heavy") > 0


@pytest.mark.perf
def test_an_idle_target_exits_2_saying_why(tmp_path: Path) -> None:
    """It exited 0, as if a profile had been taken (flamed flamegraph exits 2 too)."""
    require_perf()
    idle = subprocess.Popen(["sleep", "60"])
    try:
        out = tmp_path / "idle.svg"
        done = run_flamed("record", "-p", str(idle.pid), "-d", "1", "-o", str(out))
    finally:
        idle.kill()
        idle.wait()
    assert done.returncode == 2, done.stderr.decode()
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and f"no samples of process id {idle.pid}" in lines[0], lines
    assert "No samples" in out.read_text()  # still a valid graph, as flamed flamegraph writes


@pytest.mark.perf
def test_a_frequency_above_the_kernels_limit_says_what_perf_does(
    tmp_path: Path, burning: int
) -> None:
    require_perf()
    limit = int(Path("/proc/sys/kernel/perf_event_max_sample_rate").read_text())
    out = tmp_path / "fast.folded"
    done = run_flamed(
        "record", "-p", str(burning), "-d", "3", "-F", str(limit * 10), "-o", str(out)
    )
    assert done.returncode == 0, done.stderr.decode()
    err = done.stderr.decode()
    assert "kernel.perf_event_max_sample_rate" in err and f"{limit} Hz" in err, err
    assert weight(read_folded(out.read_bytes()), "heavy") > 0


@pytest.mark.parametrize("name", ["x.png", "x", "x.svg.gz", "x.folded.gz"])
def test_an_unknown_output_extension_is_refused_before_recording(tmp_path: Path, name: str) -> None:
    """`-o x.png` wrote folded text into x.png."""
    done = run_flamed("record", "-a", "-d", "1", "-o", str(tmp_path / name))
    err = one_line_error(done)
    assert done.returncode == 2 and ".svg" in err and ".folded" in err, err
    assert list(tmp_path.iterdir()) == []


def test_missing_pid_is_one_line(tmp_path: Path) -> None:
    done = run_flamed("record", "-p", "999999999", "-d", "1", "-o", str(tmp_path / "x.folded"))
    assert "no process with process id 999999999 is running" in one_line_error(done)
    assert not (tmp_path / "x.folded").exists()


def test_pattern_matching_nothing_is_one_line() -> None:
    done = run_flamed("record", "--process", "^no-such-process-here$", "-d", "1")
    assert "no process with process name" in one_line_error(done)
    done = run_flamed("record", "--unit", "no-such.service", "-d", "1")
    assert "no cgroup found" in one_line_error(done)


def test_bad_arguments_are_usage_errors() -> None:
    done = run_flamed("record", "--process", "(", "-d", "1")
    assert "bad regular expression" in one_line_error(done)
    assert done.returncode == 2
    done = run_flamed("record", "-p", "12,abc")
    assert "process ids" in one_line_error(done)


def test_missing_perf_names_the_package(tmp_path: Path) -> None:
    done = run_flamed("record", "-a", "-d", "1", "--perf", str(tmp_path / "no-perf"))
    assert "linux-perf on Debian" in one_line_error(done)


@pytest.fixture
def sleeping() -> Iterator[int]:
    """A shell that spends its time blocked in wait4 (for each `sleep 0.05` it starts)."""
    proc = subprocess.Popen(["sh", "-c", "while :; do sleep 0.05; done"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_record_off_cpu_time(tmp_path: Path, sleeping: int) -> None:
    """Real bpftrace: where the shell was blocked, in microseconds, as folded text and SVG."""
    from tests.collector.test_offcpu import require_bpftrace

    require_bpftrace()
    out = tmp_path / "off.folded"
    done = run_flamed("record", "--off-cpu", "-p", str(sleeping), "-d", "4", "-o", str(out))
    assert done.returncode == 0, done.stderr
    folded = read_folded(out.read_bytes())
    waiting = sum(count for stack, count in folded.items() if "do_wait" in stack)
    assert waiting > 0.5e6, folded.sorted_items()[:5]  # microseconds: most of the recording
    assert all(stack.startswith("sh;") for stack in folded), folded.sorted_items()[:5]
    svg = tmp_path / "off.svg"
    done = run_flamed("record", "--off-cpu", "-p", str(sleeping), "-d", "3", "-o", str(svg))
    assert done.returncode == 0, done.stderr
    text = svg.read_text()
    assert "off-CPU time of process id" in text and " us" in text and "do_wait" in text


@pytest.fixture
def half_busy() -> Iterator[int]:
    """A Python process that spins 50 ms, then sleeps 50 ms, over and over."""
    loop = "import time\nwhile True:\n    t = time.time()\n    while time.time() - t < 0.05:\n"
    loop += "        pass\n    time.sleep(0.05)\n"
    proc = subprocess.Popen([sys.executable, "-c", loop])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_record_hot_cold_puts_cpu_and_blocked_time_in_one_graph(
    tmp_path: Path, half_busy: int
) -> None:
    """Real perf and bpftrace at once: the time it ran and the time it slept, both in us."""
    from tests.collector.test_offcpu import require_bpftrace

    require_perf()
    require_bpftrace()
    out = tmp_path / "both.folded"
    args = ("record", "--hot-cold", "-p", str(half_busy), "-F", "199", "-d", "4")
    done = run_flamed(*args, "-o", str(out))
    assert done.returncode == 0, done.stderr
    folded = read_folded(out.read_bytes())
    cold = sum(count for stack, count in folded.items() if stack.endswith("_[o]"))
    hot = folded.total() - cold
    assert all(
        all(frame.endswith("_[o]") for frame in stack.split(";")) or "_[o]" not in stack
        for stack in folded
    ), folded.sorted_items()[:5]  # a stack is all CPU or all off-CPU
    assert any("nanosleep" in stack or "clock_nanosleep" in stack for stack in folded)
    # Each is about half of the 4 s on an idle machine; on a loaded one the spinning thread
    # waits to run (off CPU, in the scheduler) much longer. One thread is never on and off
    # CPU for longer than it was recorded (4 s, and a little for the start of the two).
    assert hot >= 0.1e6 and cold >= 0.3e6 and hot + cold <= 5.0e6, (hot, cold)
    svg = tmp_path / "both.svg"
    done = run_flamed(*args, "-o", str(svg))
    assert done.returncode == 0, done.stderr
    text = svg.read_text()
    assert "CPU and off-CPU time of process id" in text and " us" in text
    unmarked = run_flamed("record", "--hot-cold", "--off-cpu", "-p", str(half_busy))
    assert "not allowed with argument" in one_line_error(unmarked)


def test_off_cpu_errors_are_one_line(tmp_path: Path, sleeping: int) -> None:
    done = run_flamed("record", "--off-cpu", "--min-block", "1y", "-p", str(sleeping))
    assert "--min-block: '1y' is not a duration" in one_line_error(done)
    missing = str(tmp_path / "bpftrace")
    done = run_flamed("record", "--off-cpu", "--bpftrace", missing, "-p", str(sleeping), "-d", "2")
    assert "off-CPU: bpftrace not found" in one_line_error(done)
