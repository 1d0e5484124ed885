"""Target resolution: which processes (or cgroup, or the whole machine) a spec means now.

Name-based targets (``process``, ``cmdline``) are re-resolved every bucket by
the sessions: the answer changes as processes come and go. A target with no
match resolves to an empty ``Resolution`` (the session waits), never an error.
Everything read from the system (``/proc``, the cgroup tree, ``systemctl``) is
a constructor parameter, so tests can hand in a fake tree.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flamed.collapse.errors import UsageError
from flamed.collector.base import TargetSpec

Mode = Literal["pids", "cgroup", "all"]


@dataclass(frozen=True)
class Resolution:
    """What to sample right now. ``empty`` means: nothing matches, wait."""

    mode: Mode
    pids: tuple[int, ...] = ()
    """The processes (``pids`` mode), or the cgroup's processes (for the status only)."""
    cgroup: str | None = None
    """The cgroup path relative to the cgroup mount, for ``perf -G`` (``cgroup`` mode)."""

    @property
    def empty(self) -> bool:
        return (self.mode == "pids" and not self.pids) or (
            self.mode == "cgroup" and self.cgroup is None
        )

    def sampling_key(self) -> tuple[object, ...]:
        """What the sampler's command line depends on (a cgroup's pids do not matter)."""
        return (self.mode, self.pids if self.mode == "pids" else (), self.cgroup)


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    comm: str
    cmdline: str


def spec_kind(spec: TargetSpec) -> str:
    """Which one of pids/process/cmdline/unit/all the spec sets; UsageError if not exactly one."""
    kinds = [
        name
        for name, value in (
            ("pids", spec.pids),
            ("process", spec.process),
            ("cmdline", spec.cmdline),
            ("unit", spec.unit),
            ("all", spec.all),
        )
        if value
    ]
    if len(kinds) != 1:
        raise UsageError(
            f"target {spec.name!r}: set exactly one of pids, process, cmdline, unit, all "
            f"(got {', '.join(kinds) or 'none'})"
        )
    return kinds[0]


def compile_pattern(spec: TargetSpec, text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as err:
        raise UsageError(f"target {spec.name!r}: bad regular expression {text!r}: {err}") from err


class Resolver:
    """Resolves a ``TargetSpec`` against the running system."""

    def __init__(
        self,
        spec: TargetSpec,
        *,
        proc_root: Path = Path("/proc"),
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        systemctl_path: str | None = "systemctl",
        exclude: tuple[int, ...] | None = None,
    ) -> None:
        self.spec = spec
        self.kind = spec_kind(spec)
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.systemctl_path = systemctl_path
        self.exclude = frozenset((os.getpid(),) if exclude is None else exclude)
        text = spec.process if self.kind == "process" else spec.cmdline
        self.pattern = compile_pattern(spec, text) if text is not None else None

    @property
    def dynamic(self) -> bool:
        """Does the answer change over time (so it must be re-resolved every bucket)?"""
        return self.kind in ("pids", "process", "cmdline", "unit")

    def resolve(self) -> Resolution:
        if self.kind == "all":
            return Resolution("all")
        if self.kind == "unit":
            return self._resolve_unit()
        if self.kind == "pids":
            alive = tuple(pid for pid in self.spec.pids if pid_alive(self.proc_root, pid))
            return Resolution("pids", alive)
        return Resolution("pids", tuple(sorted(self._matching(self.exclude))))

    def _matching(self, skip: frozenset[int]) -> Iterator[int]:
        pattern = self.pattern
        assert pattern is not None
        by_comm = self.kind == "process"
        for info in list_processes(self.proc_root, with_cmdline=not by_comm):
            if info.pid in skip:
                continue
            if pattern.search(info.comm if by_comm else info.cmdline):
                yield info.pid

    def _resolve_unit(self) -> Resolution:
        unit = self.spec.unit
        assert unit is not None
        relative = unit_cgroup(unit, self.cgroup_root, self.systemctl_path)
        if relative is None:
            return Resolution("cgroup")
        pids = cgroup_pids(self.cgroup_root, relative)
        return Resolution("cgroup", pids, relative)


def pid_alive(proc_root: Path, pid: int) -> bool:
    """Is there a live (not zombie) process with this id? Without /proc (macOS): signal 0."""
    if not proc_root.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc_root / str(pid) / "stat").read_bytes()
    except OSError:
        return False
    return parse_state(stat) not in ("Z", "X", "")


def parse_state(stat: bytes) -> str:
    """The state letter of a ``/proc/PID/stat`` line (the comm may hold spaces and parens)."""
    close = stat.rfind(b")")
    return stat[close + 2 : close + 3].decode("ascii", "replace") if close >= 0 else ""


def list_processes(proc_root: Path, *, with_cmdline: bool = True) -> Iterator[ProcessInfo]:
    """Every live process under ``proc_root``; kernel threads have an empty cmdline."""
    try:
        names = os.listdir(proc_root)
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        info = read_process(proc_root / name, int(name), with_cmdline)
        if info is not None:
            yield info


def read_process(folder: Path, pid: int, with_cmdline: bool) -> ProcessInfo | None:
    try:
        comm = (folder / "comm").read_bytes().rstrip(b"\n")
        cmdline = (folder / "cmdline").read_bytes() if with_cmdline else b""
        stat = (folder / "stat").read_bytes()
    except OSError:  # it went away while we looked
        return None
    if parse_state(stat) in ("Z", "X"):
        return None
    text = cmdline.rstrip(b"\0").replace(b"\0", b" ")
    return ProcessInfo(pid, comm.decode("utf-8", "replace"), text.decode("utf-8", "replace"))


def unit_cgroup(unit: str, cgroup_root: Path, systemctl_path: str | None) -> str | None:
    """A systemd unit's cgroup relative to the cgroup mount, or None where it is not running."""
    if systemctl_path:
        found = systemctl_cgroup(unit, systemctl_path)
        if found:
            return found.lstrip("/")
    return search_cgroup(unit, cgroup_root)


def systemctl_cgroup(unit: str, systemctl_path: str) -> str | None:
    try:
        done = subprocess.run(
            [systemctl_path, "show", "--property=ControlGroup", "--value", "--", unit],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.decode("utf-8", "replace").strip()
    return text if done.returncode == 0 and text else None


SLICES = ("system.slice", "user.slice", "machine.slice", "")
HIERARCHIES = ("", "unified", "systemd", "perf_event")


def search_cgroup(unit: str, cgroup_root: Path) -> str | None:
    """Find ``…/SLICE/UNIT`` under the cgroup mount (v2, or v1/hybrid hierarchies)."""
    for hierarchy in HIERARCHIES:
        base = cgroup_root / hierarchy if hierarchy else cgroup_root
        for slice_name in SLICES:
            candidate = base / slice_name / unit if slice_name else base / unit
            if (candidate / "cgroup.procs").is_file():
                return str(candidate.relative_to(base))
    return None


def cgroup_pids(cgroup_root: Path, relative: str) -> tuple[int, ...]:
    """The processes in a cgroup and its children (bounded walk), sorted."""
    for hierarchy in HIERARCHIES:
        base = (cgroup_root / hierarchy) if hierarchy else cgroup_root
        folder = base / relative
        if (folder / "cgroup.procs").is_file():
            return tuple(sorted(walk_procs(folder)))
    return ()


def walk_procs(folder: Path, limit: int = 10_000) -> set[int]:
    found: set[int] = set()
    for dirpath, _dirs, files in os.walk(folder):
        if "cgroup.procs" in files:
            try:
                text = (Path(dirpath) / "cgroup.procs").read_text()
            except OSError:
                continue
            found.update(int(word) for word in text.split() if word.isdigit())
        if len(found) >= limit:
            break
    return found
