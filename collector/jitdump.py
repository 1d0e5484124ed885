"""jitdump files read by flamed itself (``jitdump = true``), as perf maps are.

A JIT that writes jitdump (``node --perf-prof``, CPython 3.13 ``-X perf_jit``,
a JVM with a jitdump agent) appends a binary record per piece of code it
compiles to ``jit-PID.dump`` (PID as its own namespace sees it), and maps the
file executable so that a profiler finds it: the path is in ``/proc/PID/maps``.
perf's way to use it is ``perf inject --jit`` over a finished recording; in
pipe mode it holds every event until its input ends, so it cannot sit in the
streaming pipeline (a long-lived ``perf record -o - | perf script -i -``).
Instead flamed reads the dump's ``JIT_CODE_LOAD`` records (address, size,
name) and names the frames perf gives as ``[unknown] (/tmp/perf-PID.map)`` (the
JIT's code is in anonymous memory) through the same ``PerfMaps`` machinery:
opened relative to ``/proc/PID/root`` without following links, re-read as it
grows, bounded. The code bytes in each record are skipped, never read.

Format (perf's tools/perf/Documentation/jitdump-specification.txt): a header
(magic ``JiTD``, version, header size, ...), then records of ``id``,
``total_size``, ``timestamp`` and a body; ``JIT_CODE_LOAD`` (0) has pid, tid,
vma, code address, code size, code index, a NUL-terminated name, the code.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from flamed.collector.perfmap import MAX_LINE, READ_CHUNK, Split, namespace_pid

MAGIC = 0x4A695444
HEADER = struct.Struct("=IIIIIIQQ")
"""magic, version, total_size, elf_mach, pad1, pid, timestamp, flags."""
RECORD = struct.Struct("=IIQ")
"""id, total_size, timestamp."""
CODE_LOAD = struct.Struct("=IIQQQQ")
"""pid, tid, vma, code_addr, code_size, code_index (then the name, then the code)."""
JIT_CODE_LOAD = 0
MAX_HEADER = 4096
MAPS_BYTES = 8 << 20
"""Bytes of /proc/PID/maps read to find the dump at most."""
ENTRY_BYTES = 64
"""What an entry costs besides its name, about (for the memory bound)."""


class JitDump:
    """The ``MapFormat`` of jitdump files."""

    what = "jitdump"

    def locate(self, proc_root: Path, pid: int) -> tuple[str, ...] | None:
        """The dump the process has mapped (``.../jit-NSPID.dump``), as path parts."""
        name = re.compile(rb"/jit-%d\.dump$" % namespace_pid(proc_root, pid))
        try:
            with open(proc_root / str(pid) / "maps", "rb") as maps:
                text = maps.read(MAPS_BYTES)
        except OSError:
            return None
        for line in text.splitlines():
            fields = line.split(None, 5)
            if len(fields) == 6 and name.search(fields[5]):
                parts = tuple(fields[5].decode("utf-8", "surrogateescape").split("/")[1:])
                if parts and all(part not in ("", ".", "..") for part in parts):
                    return parts
        return None

    def split(self, data: bytes, offset: int, size: int) -> Split:
        position, found = 0, Split([], 0, 0, 0, 0)
        if offset == 0:
            header = self._header(data, size)
            if header is None:
                return found
            position = found.consumed = header
            if header == size:  # not a jitdump: skipped whole
                found.malformed = 1
                return found
        while position + RECORD.size <= len(data):
            kind, total, _ = RECORD.unpack_from(data, position)
            if total < RECORD.size or offset + position + total > size:
                if total < RECORD.size:  # the stream cannot be followed further
                    found.malformed += 1
                    found.consumed = size - offset
                return found  # or the last record is still being written
            body = data[position + RECORD.size : position + total]
            if kind == JIT_CODE_LOAD and not self._load(body, found):
                if position + total > len(data) and (position or len(data) < READ_CHUNK):
                    return found  # the record goes on past what was read: read it next
                found.malformed += 1
            found.records += 1
            position += total
            found.consumed = position
        return found

    @staticmethod
    def _header(data: bytes, size: int) -> int | None:
        """The header's size; ``size`` if the file is not a jitdump; None: too short yet."""
        if len(data) < HEADER.size:
            return None if size < READ_CHUNK and len(data) == size else size
        magic, _, length, *_ = HEADER.unpack_from(data)
        if magic != MAGIC or not HEADER.size <= length <= MAX_HEADER:
            return size
        return int(length)

    @staticmethod
    def _load(body: bytes, found: Split) -> bool:
        """Add a JIT_CODE_LOAD record's entry; False if its name is not in ``body``."""
        if len(body) <= CODE_LOAD.size:
            return False
        _, _, _, address, length, _ = CODE_LOAD.unpack_from(body)
        end = body.find(b"\0", CODE_LOAD.size, CODE_LOAD.size + MAX_LINE)
        if end < 0:
            return False
        name = body[CODE_LOAD.size : end]
        if length and name and address + length < 1 << 64:
            found.entries.append((address, address + length, name))
            found.held += len(name) + ENTRY_BYTES
        return True
