"""Tell the input format from its first bytes and fold it with that format's collapser.

Each format module offers ``is_applicable(head: bytes) -> bool | None``: True
when the head looks like its format, False when it cannot be, None when more
input is needed. Formats are asked in the order of ``FORMATS``; the first that
says True wins once every format before it has said False. A new format joins
by adding a row. Formats that tell themselves from their first line come first,
so that they say False at once on anything else; ``collapse recursive`` takes
folded stacks, which guessing folds as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flamed.collapse import (
    bpftrace,
    dtrace,
    folded,
    ghcprof,
    perf,
    sample,
    vsprof,
    vtune,
    xctrace,
)
from flamed.collapse.common import Collapser
from flamed.collapse.errors import InputError
from flamed.collapse.folded import Folded

# At most this much input is held back while the format is undecided.
HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class GuessFormat:
    name: str
    is_applicable: Callable[[bytes], bool | None]
    make_collapser: Callable[[], Collapser]


FORMATS: tuple[GuessFormat, ...] = (
    GuessFormat("xctrace", xctrace.is_applicable, xctrace.XctraceCollapser),
    GuessFormat("vtune", vtune.is_applicable, vtune.VTuneCollapser),
    GuessFormat("vsprof", vsprof.is_applicable, vsprof.VsprofCollapser),
    GuessFormat("ghcprof", ghcprof.is_applicable, ghcprof.GhcProfCollapser),
    GuessFormat("sample", sample.is_applicable, sample.SampleCollapser),
    GuessFormat("bpftrace", bpftrace.is_applicable, bpftrace.BpftraceCollapser),
    GuessFormat("perf", perf.is_applicable, perf.PerfCollapser),
    GuessFormat("dtrace", dtrace.is_applicable, dtrace.DTraceCollapser),
    GuessFormat("folded", folded.is_applicable, folded.FoldedCollapser),
)


def guess_format(
    head: bytes, complete: bool, formats: tuple[GuessFormat, ...] = FORMATS
) -> GuessFormat | None:
    """The format of ``head``; None while undecided. ``complete``: no more input will come.

    Raises InputError, naming the formats tried, when no format accepts the input.
    """
    if complete and not head.endswith(b"\n"):
        head += b"\n"  # at the end of the input, the last line is complete
    for fmt in formats:
        verdict = fmt.is_applicable(head)
        if verdict is None and (complete or len(head) >= HEAD_LIMIT):
            verdict = False
        if verdict is None:
            return None
        if verdict:
            return fmt
    names = ", ".join(fmt.name for fmt in formats)
    raise InputError(f"cannot tell the input format (tried {names})")


class GuessCollapser:
    """Holds input back until its format is known, then hands everything to that collapser.

    Empty input (or only white space) folds to an empty profile.
    """

    def __init__(self, formats: tuple[GuessFormat, ...] = FORMATS) -> None:
        self.formats = formats
        self.format: GuessFormat | None = None
        self._collapser: Collapser | None = None
        self._head = b""
        self._next_check = 1

    def feed(self, data: bytes) -> None:
        if self._collapser is not None:
            self._collapser.feed(data)
            return
        self._head += data
        if not self._head.strip():
            self._head = self._head[-1024:]  # white space only so far: keep a bounded tail
            return
        # Judging the head costs its length: judge again only when it has doubled.
        if len(self._head) >= self._next_check:
            self._next_check = min(2 * len(self._head), HEAD_LIMIT)
            self._decide(complete=False)

    def finish(self) -> Folded:
        if self._collapser is None:
            if not self._head.strip():
                return Folded()
            self._decide(complete=True)
        assert self._collapser is not None
        return self._collapser.finish()

    def _decide(self, complete: bool) -> None:
        fmt = guess_format(self._head, complete, self.formats)
        if fmt is None:
            return
        self.format = fmt
        self._collapser = fmt.make_collapser()
        head, self._head = self._head, b""
        self._collapser.feed(head)
