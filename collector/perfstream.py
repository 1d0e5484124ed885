"""perf record's pipe stream, mended on its way to perf script: KSYMBOL records cut to size.

Linux writes a KSYMBOL record (a kernel symbol registered or unregistered: a BPF
program, a trampoline, out-of-line code) to every perf event that asked for
them, and grows the record's size in the header by each event's sample-id
fields as it goes, never setting it back (``perf_event_ksymbol_output``; the
other side-band records restore it). So when two perf sessions track the
machine (two targets of one daemon, a CI job's perf beside it), all but the
first get KSYMBOL records whose size overstates what was written; perf script
reads the event id from the stale bytes at their end, finds no such event and
exits 234 ("failed to process type: 17"). The true size is known: the fixed
fields, the name (NUL-padded to 8 bytes) and this session's sample-id fields,
which the stream's HEADER_ATTR records describe. A longer record is cut back to
it (the kernel wrote the id there: perf script then places the symbol as it
should); one that cannot hold it is dropped. Everything else passes untouched.

Stream layout: a 16-byte pipe header, then records of an 8-byte header
(u32 type, u16 misc, u16 size) and ``size - 8`` bytes of body; two kinds
(HEADER_TRACING_DATA, AUXTRACE) are followed by a payload of the size their
body gives, outside the record.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

PIPE_HEADER = 16
KSYMBOL = 17
HEADER_ATTR = 64
TRACING_DATA = 66
AUXTRACE = 71
RECORD = struct.Struct("<IHH")
KSYMBOL_FIXED = 24
"""Header, u64 addr, u32 len, u16 ksym_type, u16 flags: the name follows."""
SAMPLE_ID_BITS = (1 << 1) | (1 << 2) | (1 << 6) | (1 << 7) | (1 << 9) | (1 << 16)
"""TID, TIME, ID, CPU, STREAM_ID, IDENTIFIER: the u64s sample_id_all appends to a record."""
SAMPLE_ID_ALL = 1 << 18
KSYMBOL_FLAG = 1 << 29
"""Bits of perf_event_attr's flags word (at byte 40 of the attribute)."""


class StreamMender:
    """Feed it perf record's output in pieces of any size; each call returns what may go
    on to perf script (whole records; a record cut across pieces is held, at most 64 KiB)."""

    def __init__(self, on_fix: Callable[[str], None] = lambda fix: None) -> None:
        self.on_fix = on_fix
        """Told ``truncated`` or ``dropped`` for each KSYMBOL record mended."""
        self.id_size: int | None = None
        """Bytes of sample-id fields after a KSYMBOL record's name (None: no attribute yet)."""
        self._pending = b""
        self._raw = PIPE_HEADER
        """Bytes still to pass untouched (the pipe header, a payload after its record)."""

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        parts: list[bytes] = []
        start = pos = 0
        end = len(buffer)
        while pos < end:
            if self._raw:
                step = min(self._raw, end - pos)
                self._raw -= step
                pos += step
                continue
            if pos + 8 > end:
                break
            kind, _, size = RECORD.unpack_from(buffer, pos)
            if size < 8:  # not perf's stream: perf script will say so; pass it all on
                self._raw = 1 << 62
                continue
            if pos + size > end:
                break
            if kind == KSYMBOL:
                mended = self._ksymbol(buffer, pos, size)
                if mended is not None:
                    parts += (buffer[start:pos], mended)
                    start = pos + size
            elif kind == HEADER_ATTR:
                self._attribute(buffer, pos, size)
            elif kind in (TRACING_DATA, AUXTRACE):
                self._raw = payload_size(buffer, pos, kind)
            pos += size
        parts.append(buffer[start:pos])
        self._pending = buffer[pos:]
        return b"".join(parts)

    def finish(self) -> bytes:
        """What is held at the stream's end (a cut record: perf script reports it)."""
        rest, self._pending = self._pending, b""
        return rest

    def _attribute(self, buffer: bytes, pos: int, size: int) -> None:
        """A HEADER_ATTR record: the event that tracks KSYMBOLs says how long their ids are."""
        if size < 8 + 48:
            return
        sample_type, flags = struct.unpack_from("<Q8xQ", buffer, pos + 8 + 24)
        if flags & KSYMBOL_FLAG:
            fields = sample_type & SAMPLE_ID_BITS if flags & SAMPLE_ID_ALL else 0
            self.id_size = 8 * fields.bit_count()

    def _ksymbol(self, buffer: bytes, pos: int, size: int) -> bytes | None:
        """The record as perf script can read it (None: as it is; empty: dropped)."""
        if self.id_size is None:
            return None
        nul = buffer.find(b"\0", pos + KSYMBOL_FIXED, pos + size)
        if nul < 0:
            self.on_fix("dropped")
            return b""
        name = (nul - pos - KSYMBOL_FIXED) // 8 * 8 + 8
        true = KSYMBOL_FIXED + name + self.id_size
        if true == size:
            return None
        if true > size:
            self.on_fix("dropped")
            return b""
        self.on_fix("truncated")
        kind, misc, _ = RECORD.unpack_from(buffer, pos)
        return RECORD.pack(kind, misc, true) + buffer[pos + 8 : pos + true]


def payload_size(buffer: bytes, pos: int, kind: int) -> int:
    """The bytes that follow a HEADER_TRACING_DATA (u32) or AUXTRACE (u64) record."""
    if RECORD.unpack_from(buffer, pos)[2] < 16:
        return 0
    if kind == TRACING_DATA:
        return int(struct.unpack_from("<I", buffer, pos + 8)[0])
    return int(struct.unpack_from("<Q", buffer, pos + 8)[0])
