"""JIT perf maps read by flamed itself, through the target's own root.

A JIT (``node --perf-basic-prof``, ``jcmd PID Compiler.perfmap``, CPython 3.12+
``-X perf``) writes ``/tmp/perf-PID.map``: one line per piece of generated code,
``START SIZE NAME`` in hex (bare or ``0x``-prefixed). perf reads it once, from its
own ``/tmp`` and under its own pid namespace: under the shipped unit's
``PrivateTmp``, or for a process in a container, it finds nothing and frames come
out ``[unknown]``; and a long-lived ``perf script`` never sees what the JIT
appends later. So flamed names those frames itself (``PerfCollapser(maps=...)``)
from ``/proc/PID/root/tmp/perf-NSPID.map``: the target's ``/tmp`` as its mount
namespace sees it, and its pid as its own pid namespace sees it (the last field
of ``NSpid`` in ``/proc/PID/status``).

The file is written by the target, so it is hostile input:

* opened relative to ``/proc/PID/root`` with ``O_NOFOLLOW`` for every folder on
  the way and for the file (no symbolic link is followed out of the target's
  root), without
  blocking, and read only if it is a regular file owned by the target's user or
  root (as perf asks); FIFOs, devices and others' files are refused and counted;
* read in bounded chunks, at most ``max_bytes`` over all maps held (least
  recently used maps are dropped first, then a map is cut short and counted);
* malformed lines (not two hex numbers and a name, or longer than
  ``MAX_LINE``) are skipped and counted.

A map is re-read when it changes, checked at most every ``CHECK_SECONDS`` per
process (every ``MISS_CHECK_SECONDS`` when asked for an address it lacks): what
was appended is read from where the last read stopped (a rewritten or replaced
file, as a JVM writes it when asked, is read again whole). Newer lines win over
older ones for the same address. A map is kept after its process exits, until
no frame of it was asked for ``keep_seconds`` (its last samples are folded), or
another process takes its pid. The file's place and format are a ``MapFormat``:
``TextMap`` here, ``flamed.collector.jitdump.JitDump`` for jitdump files.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import re
import stat
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Protocol

from flamed.collapse.folded import decode
from flamed.collector.base import MapStats
from flamed.collector.procfs import proc_status, stat_fields

log = logging.getLogger("flamed.collector")

MAX_LINE = 4096
"""Bytes in one map line at most (a longer one is malformed)."""
READ_CHUNK = 1 << 20
READ_PER_LOOK = 8 << 20
"""Bytes one look reads at most (about 0.4 s of CPU for a text map); a bigger map is read
over several looks."""
MAX_BYTES = 128 << 20
"""Bytes of map text held over all maps (their tables take about 1.5 times this)."""
MAX_MAPS = 256
CHECK_SECONDS = 1.0
MISS_CHECK_SECONDS = 0.1
"""An address the map lacks has it looked at again, at most this often per process."""
KEEP_SECONDS = 60.0
TAIL = 64
"""Bytes before the read offset remembered to tell an appended file from a rewritten one."""
LINE = re.compile(
    rb"^[ \t]*+(?:0[xX])?([0-9a-fA-F]{1,16})[ \t]++(?:0[xX])?([0-9a-fA-F]{1,16})[ \t]++"
    rb"([^\n]{1,%d}?)\r?$" % MAX_LINE,
    re.MULTILINE,
)
BLANK = re.compile(rb"^[ \t\r]*\n", re.MULTILINE)
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Part:
    """One read's entries, sorted by start address."""

    __slots__ = ("ends", "names", "starts")

    def __init__(self, entries: list[tuple[int, int, bytes]]) -> None:
        entries.sort(key=itemgetter(0))  # stable: a later line after an earlier
        self.starts = array("Q", [entry[0] for entry in entries])
        self.ends = array("Q", [entry[1] for entry in entries])
        self.names = [entry[2] for entry in entries]

    def find(self, address: int) -> bytes | None:
        index = bisect.bisect_right(self.starts, address) - 1
        if index >= 0 and address < self.ends[index]:
            return self.names[index]
        return None

    def __len__(self) -> int:
        return len(self.names)

    def entries(self) -> list[tuple[int, int, bytes]]:
        return list(zip(self.starts, self.ends, self.names, strict=True))


class MapTable:
    """One process's map as read so far."""

    def __init__(self, started: str, now: float) -> None:
        self.started = started
        """The process's start time (``/proc/PID/stat``): a new process under the pid differs."""
        self.identity: tuple[int, int] | None = None
        self.offset = 0
        self.tail = b""
        self.parts: list[Part] = []
        self.checked = now
        self.used = now
        self.gone = False

    def find(self, address: int) -> bytes | None:
        for part in reversed(self.parts):
            name = part.find(address)
            if name is not None:
                return name
        return None

    def add(self, entries: list[tuple[int, int, bytes]]) -> None:
        """Each read of a growing map is a part; a part is merged into the one before while
        that is not much bigger, so a map read in many pieces stays a few parts."""
        if entries:
            self.parts.append(Part(entries))
        while len(self.parts) > 1 and len(self.parts[-2]) <= 2 * len(self.parts[-1]):
            newer, older = self.parts.pop(), self.parts.pop()
            self.parts.append(Part(older.entries() + newer.entries()))


@dataclass
class Split:
    """What a format found in a chunk of its file."""

    entries: list[tuple[int, int, bytes]]
    """(start, end, name) of each piece of code."""
    consumed: int
    """Bytes of the file read past (0: wait for more); past the chunk when code is skipped."""
    records: int
    malformed: int
    held: int
    """Bytes the entries keep in memory (about)."""


class MapFormat(Protocol):
    what: str

    def locate(self, proc_root: Path, pid: int) -> tuple[str, ...] | None:
        """The file's path inside the process's root, as its parts; None if it has none."""

    def split(self, data: bytes, offset: int, size: int) -> Split:
        """The entries in ``data``, read at ``offset`` of a file of ``size`` bytes."""


class TextMap:
    """``/tmp/perf-NSPID.map``: ``START SIZE NAME`` lines."""

    what = "map"

    def locate(self, proc_root: Path, pid: int) -> tuple[str, ...]:
        return ("tmp", f"perf-{namespace_pid(proc_root, pid)}.map")

    def split(self, data: bytes, offset: int, size: int) -> Split:
        end = data.rfind(b"\n") + 1
        if end == 0:  # no line end in a whole chunk: an overlong line (malformed)
            if len(data) < READ_CHUNK:
                return Split([], 0, 0, 0, 0)  # a last line still being written
            end = len(data)
        text = data[:end]
        entries: list[tuple[int, int, bytes]] = []
        for start_text, length_text, name in LINE.findall(text):
            start, length = int(start_text, 16), int(length_text, 16)
            if length and start + length < 1 << 64:
                entries.append((start, start + length, name))
        lines = text.count(b"\n") + (not text.endswith(b"\n")) - len(BLANK.findall(text))
        return Split(entries, end, lines, max(0, lines - len(entries)), end)


class PerfMaps:
    """Names perf-map frames: ``lookup(pid, address)`` is a ``flamed.collapse.perf.MapResolver``."""

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        format: MapFormat | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = MAX_BYTES,
        keep_seconds: float = KEEP_SECONDS,
        name: str = "",
    ) -> None:
        self.proc_root = proc_root
        self.format: MapFormat = format or TextMap()
        self.clock = clock
        self.max_bytes = max_bytes
        self.keep_seconds = keep_seconds
        self.name = name
        """Who reads (``target NAME``), for log lines."""
        self.stats = MapStats()
        self._tables: dict[int, MapTable] = {}
        self._held = 0
        self._sizes: dict[int, int] = {}
        self._warned: set[str] = set()

    # -- the resolver -----------------------------------------------------------

    def lookup(self, pid: int, address: int) -> str | None:
        """The name of the code at ``address`` in process ``pid``'s map, if it has one."""
        now = self.clock()
        table = self._tables.get(pid)
        if table is None or now - table.checked >= CHECK_SECONDS:
            table = self._check(pid, table, now)
        if table is None:
            return None
        table.used = now
        name = table.find(address)
        if name is None and not table.gone and now - table.checked >= MISS_CHECK_SECONDS:
            # Code compiled since the last look: the JIT wrote its line before it ran.
            table = self._check(pid, table, now)
            name = None if table is None else table.find(address)
        return None if name is None else decode(name)

    def prune(self) -> None:
        """Drop the maps of processes gone that no frame was asked of for ``keep_seconds``
        (whether a lookup saw them go or not)."""
        now = self.clock()
        for pid, table in list(self._tables.items()):
            if now - table.used > self.keep_seconds and (
                table.gone or start_time(self.proc_root, pid) != table.started
            ):
                self._drop(pid)

    @property
    def held_bytes(self) -> int:
        return self._held

    # -- reading ----------------------------------------------------------------

    def _check(self, pid: int, table: MapTable | None, now: float) -> MapTable | None:
        started = start_time(self.proc_root, pid)
        if not started:  # gone: keep what was read until it is no longer asked for
            if table is not None:
                table.gone = True
                table.checked = now
            return table
        if table is None or table.started != started:
            if table is not None:
                self._drop(pid)
            table = MapTable(started, now)
            self._tables[pid] = table
            self._bound_count()
        table.checked = now
        self._read(pid, table)
        return table

    def _read(self, pid: int, table: MapTable) -> None:
        fd = self._open(pid)
        if fd is None:
            return
        try:
            info = os.fstat(fd)
            identity = (info.st_dev, info.st_ino)
            if identity != table.identity or not self._appended(fd, table, info.st_size):
                self._restart(pid, table, identity)
            if info.st_size > table.offset:
                self._read_from(fd, pid, table, info.st_size)
        except OSError as err:
            self._refuse(pid, "unreadable", err.strerror or str(err))
        finally:
            os.close(fd)

    def _open(self, pid: int) -> int | None:
        """The map, opened without following links out of the target's root; None if
        absent or refused."""
        path = self.format.locate(self.proc_root, pid)
        if not path:
            return None
        try:
            folder = os.open(self.proc_root / str(pid) / "root", DIR_FLAGS & ~os.O_NOFOLLOW)
        except OSError:
            return None  # gone, or not ours to read
        try:
            for part in path[:-1]:
                try:
                    inner = os.open(part, DIR_FLAGS, dir_fd=folder)
                except OSError as err:
                    self._open_failed(pid, err, f"{part}/")
                    return None
                os.close(folder)
                folder = inner
            try:
                fd = os.open(path[-1], OPEN_FLAGS, dir_fd=folder)
            except OSError as err:
                self._open_failed(pid, err, f"the {self.format.what}")
                return None
        finally:
            os.close(folder)
        return fd if self._acceptable(pid, fd) else None

    def _open_failed(self, pid: int, err: OSError, what: str) -> None:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            self._refuse(pid, "symlink", f"{what} is a symbolic link")
        elif err.errno != errno.ENOENT:
            self._refuse(pid, "unreadable", err.strerror or str(err))

    def _acceptable(self, pid: int, fd: int) -> bool:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            self._refuse(pid, "not_regular", "not a regular file")
        elif info.st_uid not in (0, process_uid(self.proc_root, pid)):
            self._refuse(pid, "owner", f"owned by uid {info.st_uid}, not the process's user")
        else:
            return True
        os.close(fd)
        return False

    def _appended(self, fd: int, table: MapTable, size: int) -> bool:
        """Is the file what was read before plus more (not rewritten since)?"""
        if size < table.offset:
            return False
        if not table.tail:
            return True
        start = table.offset - len(table.tail)
        return os.pread(fd, len(table.tail), start) == table.tail

    def _restart(self, pid: int, table: MapTable, identity: tuple[int, int]) -> None:
        self._release(pid)
        table.identity = identity
        table.offset = 0
        table.tail = b""
        table.parts = []

    def _read_from(self, fd: int, pid: int, table: MapTable, size: int) -> None:
        """Read complete lines from ``table.offset`` up to ``size``, within the bound; what
        one look reads is one part of the table."""
        entries: list[tuple[int, int, bytes]] = []
        try:
            self._read_chunks(fd, pid, table, size, entries)
        finally:
            table.add(entries)

    def _read_chunks(
        self, fd: int, pid: int, table: MapTable, size: int, entries: list[tuple[int, int, bytes]]
    ) -> None:
        """At most READ_PER_LOOK bytes: the event loop waits while a look reads; the next
        look goes on where this one stopped."""
        stop = min(size, table.offset + READ_PER_LOOK)
        while table.offset < stop:
            want = min(READ_CHUNK, stop - table.offset)
            if not self._make_room(pid, want):
                self.stats.truncated += 1
                self._warn(pid, "truncated", f"cut short at {self.max_bytes} bytes of maps")
                return
            data = os.pread(fd, want, table.offset)
            if not data:
                return
            found = self.format.split(data, table.offset, size)
            if not found.consumed:
                return  # a last line or record still being written
            self.stats.lines += found.records
            self._count_malformed(pid, found.malformed)
            entries += found.entries
            table.offset += found.consumed
            end = min(found.consumed, len(data))
            table.tail = data[max(0, end - TAIL) : end] if end == found.consumed else b""
            self._held += found.held
            self._sizes[pid] = self._sizes.get(pid, 0) + found.held
            self.stats.bytes_read += found.consumed

    # -- bounds -----------------------------------------------------------------

    def _make_room(self, pid: int, want: int) -> bool:
        """Drop other maps, least recently used first, until ``want`` more bytes fit."""
        while self._held + want > self.max_bytes:
            others = [other for other in self._tables if other != pid and other in self._sizes]
            if not others:
                return False
            self._drop(min(others, key=lambda other: self._tables[other].used))
        return True

    def _bound_count(self) -> None:
        while len(self._tables) > MAX_MAPS:
            self._drop(min(self._tables, key=lambda other: self._tables[other].used))

    def _drop(self, pid: int) -> None:
        self._release(pid)
        self._tables.pop(pid, None)

    def _release(self, pid: int) -> None:
        self._held -= self._sizes.pop(pid, 0)

    # -- telling ----------------------------------------------------------------

    def _count_malformed(self, pid: int, count: int) -> None:
        if count:
            self.stats.malformed += count
            self._warn(pid, "malformed", f"{count} malformed lines skipped")

    def _refuse(self, pid: int, reason: str, detail: str) -> None:
        self.stats.refused[reason] = self.stats.refused.get(reason, 0) + 1
        self._warn(pid, reason, f"not read: {detail}")

    def _warn(self, pid: int, kind: str, message: str) -> None:
        """Once per kind (a hostile target could repeat it every second)."""
        if kind in self._warned:
            return
        self._warned.add(kind)
        who = f"{self.name}: " if self.name else ""
        log.warning("%sperf map of pid %d: %s (said once)", who, pid, message)


def namespace_pid(proc_root: Path, pid: int) -> int:
    """The pid as the process's own pid namespace sees it (``NSpid``'s last field)."""
    fields = proc_status(proc_root, pid, "NSpid").split()
    return int(fields[-1]) if fields and fields[-1].isdigit() else pid


def process_uid(proc_root: Path, pid: int) -> int:
    """The process's real uid (``Uid``'s first field); -1 when unreadable."""
    fields = proc_status(proc_root, pid, "Uid").split()
    return int(fields[0]) if fields and fields[0].isdigit() else -1


def start_time(proc_root: Path, pid: int) -> str:
    """``/proc/PID/stat``'s start time (field 22); "" when the process is gone."""
    fields = stat_fields(proc_root, pid)
    return fields[19] if len(fields) > 19 else ""
