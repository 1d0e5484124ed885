"""What the sessions read about processes from /proc: memory, CPU time, state.

Every function takes the /proc root (tests hand in another) and answers 0 or
"" for a process that is gone or unreadable, never raises.
"""

from __future__ import annotations

import os
from pathlib import Path

from flamed.collector.targets import Resolution

NON_IDLE = (0, 1, 2, 5, 6, 7)
"""Columns of /proc/stat's cpu line that are work: user nice system irq softirq steal."""


def proc_status(proc_root: Path, pid: int, key: str) -> str:
    """One field of ``/proc/PID/status`` ("" when unreadable)."""
    try:
        text = (proc_root / str(pid) / "status").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return line[len(key) + 1 :].strip()
    return ""


def resident_bytes(proc_root: Path, pid: int) -> int:
    words = proc_status(proc_root, pid, "VmRSS").split()
    return int(words[0]) * 1024 if words and words[0].isdigit() else 0


def stat_fields(proc_root: Path, pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, pgrp, ...]; [] when gone."""
    try:
        stat = (proc_root / str(pid) / "stat").read_text()
    except OSError:
        return []
    return stat[stat.rfind(")") + 2 :].split()


def cpu_seconds(proc_root: Path, pid: int) -> float:
    """User plus system CPU time of a live process, all its threads (0 when gone)."""
    fields = stat_fields(proc_root, pid)
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stopped(proc_root: Path, pid: int) -> bool:
    """Is the process stopped (SIGSTOP, or traced)?"""
    fields = stat_fields(proc_root, pid)
    return bool(fields) and fields[0] in ("T", "t")


def io_counter(proc_root: Path, pid: int, key: str) -> int:
    """A counter of /proc/PID/io (``rchar``: bytes read, ``wchar``: written); -1 unreadable."""
    try:
        text = (proc_root / str(pid) / "io").read_text()
    except OSError:
        return -1
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key and value.strip().isdigit():
            return int(value)
    return -1


def target_cpu(resolution: Resolution, proc_root: Path) -> float:
    """CPU seconds the target has used so far: its processes (a cgroup's too), or the machine."""
    if resolution.mode == "all":
        return machine_cpu(proc_root)
    return sum(cpu_seconds(proc_root, pid) for pid in resolution.pids)


def machine_cpu(proc_root: Path) -> float:
    try:
        with (proc_root / "stat").open() as stat:
            first = stat.readline().split()
    except OSError:
        return 0.0
    if not first or first[0] != "cpu":
        return 0.0
    numbers = first[1:]
    busy = sum(int(numbers[i]) for i in NON_IDLE if i < len(numbers))
    return busy / os.sysconf("SC_CLK_TCK")
