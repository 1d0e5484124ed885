"""Collapse Instruments ``xctrace export`` XML into folded stacks, as inferno-collapse-xctrace does.

``xctrace record --template 'Time Profiler' ...`` then ``xctrace export --input
t.trace --xpath '/trace-toc/run[1]/data/table[@schema="time-profile"]'`` writes
one ``<row>`` per sample under ``<trace-query-result><node>``; each row holds a
``<backtrace>`` of ``<frame name="...">`` elements, leaf first. A backtrace or
frame seen before is written again as a reference (``<backtrace ref="15"/>``,
``<frame ref="24"/>``)::

    <trace-query-result><node><row>
      <backtrace id="10"><frame id="11" name="work" addr="0x1"/>
                         <frame id="12" name="main" addr="0x2"/></backtrace>
    </row><row><backtrace ref="10"/></row></node></trace-query-result>

Each row counts one sample of its backtrace, root first. Rust legacy-mangled
names are tidied. FlameGraph has no script for this format: inferno is the
reference. Beyond inferno: malformed XML, an unknown reference or a repeated
id is warned about and skipped (the XML from there on when it is not well
formed) instead of ending the collapse, so input cut short still counts its
complete rows; a ``;`` in a name becomes ``:`` (it would split the frame).
The parser is expat, fed as the chunks come; a document type declaration is
refused, so no entity can expand.
"""

from __future__ import annotations

from xml.parsers import expat

from flamed.collapse.common import WarnOnce
from flamed.collapse.folded import Folded
from flamed.collapse.symbols import tidy_rust

ROOT, NODE, ROW, BACKTRACE, FRAME = "trace-query-result", "node", "row", "backtrace", "frame"
# What each element is read as, by the element it is in (other combinations are ignored).
INSIDE = {None: ROOT, ROOT: NODE, NODE: ROW, ROW: BACKTRACE, BACKTRACE: FRAME}


class _Refused(Exception):
    """A document type declaration: parsing stops."""


class Row:
    __slots__ = ("backtrace",)

    def __init__(self) -> None:
        self.backtrace: int | None = None


class XctraceCollapser:
    """Streaming: ``feed()`` exported XML split anywhere, then ``finish()``."""

    def __init__(self) -> None:
        self.warn = WarnOnce()
        self.backtraces: dict[int, list[int]] = {}  # backtrace id -> frame ids, leaf first
        self.frames: dict[int, str] = {}  # frame id -> name
        self.rows: dict[int, int] = {}  # backtrace id -> rows (samples)
        self._open: list[tuple[str | None, Row | list[int] | None]] = []  # (kind, its state)
        self._done = False
        self._parser = expat.ParserCreate()
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.StartDoctypeDeclHandler = self._refuse

    def feed(self, data: bytes) -> None:
        self._parse(data)

    def finish(self) -> Folded:
        if not self._done:
            self.warn("xctrace XML ends before </trace-query-result> (complete rows counted)")
        profile = Folded()
        for backtrace, count in self.rows.items():
            stack = ";".join(self._names(backtrace))
            if stack:
                profile.add(stack, count)
        return profile

    def _parse(self, data: bytes) -> None:
        if self._done:
            return
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as err:
            if not self._done:  # (after the root element, what follows does not matter)
                self.warn("xctrace XML is not well formed (the rest is ignored)", str(err))
            self._done = True
        except _Refused:
            self.warn("xctrace XML with a document type declaration (refused)")
            self._done = True

    def _refuse(self, *args: object) -> None:
        raise _Refused

    def _names(self, backtrace: int) -> list[str]:
        names = [self.frames[frame] for frame in reversed(self.backtraces[backtrace])]
        return [tidy_rust(name).replace(";", ":") for name in names]

    # -- elements ----------------------------------------------------------------------

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        parent, parent_state = next(
            ((kind, state) for kind, state in reversed(self._open) if kind is not None),
            (None, None),
        )
        kind = tag if INSIDE.get(parent) == tag and not self._done else None
        state: Row | list[int] | None = None
        if kind == ROW:
            state = Row()
        elif kind == BACKTRACE and isinstance(parent_state, Row):
            state = self._backtrace(parent_state, attrs)
        elif kind == FRAME and isinstance(parent_state, list):
            self._frame(parent_state, attrs)
        self._open.append((kind, state))

    def _end(self, tag: str) -> None:
        kind, state = self._open.pop()
        if isinstance(state, Row) and state.backtrace is not None:
            self.rows[state.backtrace] = self.rows.get(state.backtrace, 0) + 1
        elif kind == ROOT:
            self._done = True

    def _backtrace(self, row: Row, attrs: dict[str, str]) -> list[int] | None:
        """A backtrace (new or referred to) for the row it is in; its frames, if new."""
        ref = number(attrs.get("ref"))
        if ref is not None:
            row.backtrace = ref if ref in self.backtraces else None
            if row.backtrace is None:
                self.warn("xctrace backtrace refers to an unknown id (row skipped)", str(ref))
            return None
        ident = number(attrs.get("id"))
        if ident is None or ident in self.backtraces:
            self.warn("xctrace backtrace without a new id (row skipped)", repr(attrs)[:200])
            return None
        frames: list[int] = []
        self.backtraces[ident] = frames
        row.backtrace = ident
        return frames

    def _frame(self, frames: list[int], attrs: dict[str, str]) -> None:
        """A frame (new or referred to) at the end of its backtrace's frames."""
        ref = number(attrs.get("ref"))
        if ref is not None:
            if ref in self.frames:
                frames.append(ref)
            else:
                self.warn("xctrace frame refers to an unknown id (frame skipped)", str(ref))
            return
        ident, name = number(attrs.get("id")), attrs.get("name")
        if ident is None or name is None or ident in self.frames:
            self.warn("xctrace frame without a new id and a name (skipped)", repr(attrs)[:200])
            return
        self.frames[ident] = name
        frames.append(ident)


def number(text: str | None) -> int | None:
    """An id attribute as inferno reads it (a u64), or None."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    value = int(text)
    return value if value < 1 << 64 else None


def is_applicable(head: bytes) -> bool | None:
    """An XML declaration and a ``<trace-query-result`` element, as inferno checks."""
    text = head.lstrip()
    if not text:
        return None
    if not text.startswith(b"<"):
        return False
    if b'<?xml version="1.0"' in head and b"<trace-query-result" in head:
        return True
    return None if len(head) < 4096 else False
