"""Target resolution against a fake /proc and cgroup tree, and perf's command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flamed.collapse.errors import UsageError
from flamed.collector.base import TargetSpec
from flamed.collector.perf import counted, explain_failure, record_argv, script_argv
from flamed.collector.runner import SessionOptions
from flamed.collector.targets import Resolution, Resolver, parse_state, pid_alive


def add_process(proc: Path, pid: int, comm: str, cmdline: list[str], state: str = "S") -> None:
    folder = proc / str(pid)
    folder.mkdir(parents=True)
    (folder / "comm").write_text(comm + "\n")
    (folder / "cmdline").write_bytes(b"".join(arg.encode() + b"\0" for arg in cmdline))
    (folder / "stat").write_text(f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    add_process(root, 10, "nginx", ["nginx: master process", "-g", "daemon off;"])
    add_process(root, 11, "nginx", ["nginx: worker process"])
    add_process(root, 12, "python3", ["/usr/bin/python3", "-m", "http.server"])
    add_process(root, 13, "nginx", ["nginx: worker process"], state="Z")
    add_process(root, 14, "kworker/0:1", [])
    add_process(root, 15, "weird ) name", ["/opt/weird"])
    (root / "self").mkdir()
    (root / "sys").mkdir()
    return root


def resolve(spec: TargetSpec, proc: Path, **kwargs: object) -> Resolution:
    return Resolver(spec, proc_root=proc, systemctl_path=None, **kwargs).resolve()  # type: ignore[arg-type]


def test_process_pattern_matches_command_names(proc: Path) -> None:
    assert resolve(TargetSpec("n", process="^nginx$"), proc).pids == (10, 11)
    assert resolve(TargetSpec("n", process="ngin"), proc).pids == (10, 11)
    assert resolve(TargetSpec("w", process=r"\) name"), proc).pids == (15,)


def test_cmdline_pattern_matches_the_whole_command_line(proc: Path) -> None:
    assert resolve(TargetSpec("h", cmdline=r"-m http\.server"), proc).pids == (12,)
    assert resolve(TargetSpec("m", cmdline="master process -g"), proc).pids == (10,)
    assert resolve(TargetSpec("k", cmdline="kworker"), proc).pids == ()


def test_own_process_is_never_matched(proc: Path) -> None:
    spec = TargetSpec("n", process="nginx")
    assert resolve(spec, proc, exclude=(10,)).pids == (11,)


def test_no_match_is_empty_not_an_error(proc: Path) -> None:
    found = resolve(TargetSpec("x", process="^postgres$"), proc)
    assert found.empty and found.mode == "pids"


def test_pids_that_vanished_or_are_zombies_are_dropped(proc: Path) -> None:
    found = resolve(TargetSpec("p", pids=(10, 13, 99)), proc)
    assert found.pids == (10,)
    assert not pid_alive(proc, 13)
    assert resolve(TargetSpec("p", pids=(99,)), proc).empty


def test_all_is_the_whole_machine(proc: Path) -> None:
    found = resolve(TargetSpec("a", all=True), proc)
    assert found == Resolution("all") and not found.empty


def test_exactly_one_target_kind() -> None:
    with pytest.raises(UsageError, match="exactly one"):
        Resolver(TargetSpec("none"))
    with pytest.raises(UsageError, match="process, all"):
        Resolver(TargetSpec("two", process="x", all=True))
    with pytest.raises(UsageError, match="bad regular expression"):
        Resolver(TargetSpec("bad", process="("))


def test_state_letter_survives_parentheses_in_comm() -> None:
    assert parse_state(b"7 (a) b) (c) R 1 2") == "R"
    assert parse_state(b"garbage") == ""


def make_cgroup(root: Path, relative: str, pids: list[int]) -> None:
    folder = root / relative
    folder.mkdir(parents=True)
    (folder / "cgroup.procs").write_text("".join(f"{pid}\n" for pid in pids))


def test_unit_found_in_the_cgroup_tree(tmp_path: Path, proc: Path) -> None:
    cgroups = tmp_path / "cgroup"
    make_cgroup(cgroups, "system.slice/nginx.service", [10])
    make_cgroup(cgroups, "system.slice/nginx.service/worker", [11])
    spec = TargetSpec("web", unit="nginx.service")
    found = Resolver(spec, proc_root=proc, cgroup_root=cgroups, systemctl_path=None).resolve()
    assert found == Resolution("cgroup", (10, 11), "system.slice/nginx.service")
    gone = Resolver(TargetSpec("db", unit="pg.service"), cgroup_root=cgroups, systemctl_path=None)
    assert gone.resolve().empty


def test_unit_found_in_a_hybrid_hierarchy_and_through_systemctl(tmp_path: Path) -> None:
    cgroups = tmp_path / "cgroup"
    make_cgroup(cgroups, "unified/system.slice/cron.service", [5])
    spec = TargetSpec("cron", unit="cron.service")
    found = Resolver(spec, cgroup_root=cgroups, systemctl_path=None).resolve()
    assert found.cgroup == "system.slice/cron.service" and found.pids == (5,)
    fake = tmp_path / "systemctl"
    fake.write_text(
        '#!/bin/sh\n[ "$*" = "show --property=ControlGroup --value -- app.service" ] || exit 1\n'
        "echo /custom.slice/app.service\n"
    )
    fake.chmod(0o755)
    make_cgroup(cgroups, "unified/custom.slice/app.service", [6, 7])
    spec = TargetSpec("app", unit="app.service")
    found = Resolver(spec, cgroup_root=cgroups, systemctl_path=str(fake)).resolve()
    assert found == Resolution("cgroup", (6, 7), "custom.slice/app.service")


def test_pid_alive_without_proc_uses_signal_zero(tmp_path: Path) -> None:
    assert pid_alive(tmp_path / "no-proc", os.getpid())
    assert not pid_alive(tmp_path / "no-proc", 2**22 + 12345)


OPTIONS = SessionOptions(bucket_seconds=10)


@pytest.mark.parametrize(
    ("resolution", "tail"),
    [
        (Resolution("pids", (3, 4)), ["-p", "3,4"]),
        (Resolution("all"), ["-a"]),
        (
            Resolution("cgroup", (1,), "system.slice/x.service"),
            ["-a", "-G", "system.slice/x.service"],
        ),
    ],
)
def test_record_command_line(resolution: Resolution, tail: list[str]) -> None:
    spec = TargetSpec("t", all=True, frequency=49, call_graph="dwarf")
    argv = record_argv("/usr/bin/perf", spec, OPTIONS, "cpu-clock", resolution)
    assert argv[:6] == ["/usr/bin/perf", "record", "-F", "49", "-e", "cpu-clock"]
    assert argv[6:8] == ["--call-graph", "dwarf"]
    assert argv[argv.index("-k") + 1] == "CLOCK_MONOTONIC", "samples stamped with monotonic time"
    assert argv[argv.index("-o") + 1] == "-", "perf record writes to the pipe"
    assert "--no-bpf-event" in argv and "--no-buildid-cache" in argv
    assert argv[-len(tail) :] == tail


def test_script_reads_only_what_the_collapser_needs() -> None:
    argv = script_argv("perf")
    assert argv[argv.index("-i") + 1] == "-", "perf script reads the pipe"
    assert "--no-inline" in argv and "--show-lost-events" in argv
    assert argv[argv.index("-F") + 1] == "comm,pid,tid,time,period,event,ip,sym,dso"


def test_event_detection_reads_perf_stat() -> None:
    assert counted("12345,,cycles,1000,100.00,,\n")
    assert counted("1.5,,cycles:u,1000,100.00,,")
    assert not counted("<not supported>,,cycles,0,100.00,,\n")
    assert not counted("")


def test_failures_explained_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "sys/kernel").mkdir(parents=True)
    (tmp_path / "sys/kernel/perf_event_paranoid").write_text("2\n")
    err = explain_failure(
        "perf record", 255, "Error:\nAccess ... perf_event_paranoid setting", tmp_path
    )
    assert "kernel.perf_event_paranoid is 2" in str(err) and "CAP_PERFMON" in str(err)
    err = explain_failure("perf record", -9, "[ perf record: Woken up ]\n", tmp_path)
    assert str(err) == "perf record was killed by signal 9: no message"


def test_memory_read_from_proc_status(tmp_path: Path) -> None:
    from flamed.collector.procfs import resident_bytes

    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "status").write_text("Name:\tperf\nVmRSS:\t  2048 kB\n")
    assert resident_bytes(tmp_path, 7) == 2048 * 1024
    assert resident_bytes(tmp_path, 8) == 0
