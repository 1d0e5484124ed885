"""Fold one large input on several cores: forked children fold parts of it.

The input is cut at record breaks (an empty line, where perf script output may be
cut: see ``Collapser``; a collapser may narrow that down with ``part_break``: DTrace's
where no stack goes on after it), each forked child folds one part with its
copy of the collapser and sends back its stacks, and this process folds the first
part and adds them up. Records that occur in several parts are folded in each,
at the same time.

A collapser that keeps one event (``event_filter``: by default the first one seen,
which a part starting in the middle may see differently) counts a child's stacks
only if the child kept the same event; if not, or if a child failed, this process
folds that part itself.
"""

from __future__ import annotations

import marshal
import os

from flamed.collapse.common import TYPE_CHECKING, Collapser, retire_into
from flamed.collapse.folded import Folded

if TYPE_CHECKING:
    from collections.abc import Callable
    from mmap import mmap

    from flamed.collapse.folded import Count

    PartResult = tuple[str | None, dict[str, Count]]
    """A child's result: the event it kept and its stacks."""

# Records are separated by an empty line; a part starts at one.
RECORD_BREAK = b"\n\n"


def record_break(data: bytes | mmap, start: int) -> int:
    """The first record break (``\n\n``) at or after ``start``; -1 if there is none."""
    return data.find(RECORD_BREAK, start)


def cut_points(
    data: bytes | mmap, parts: int, find_break: Callable[[bytes | mmap, int], int] = record_break
) -> list[int]:
    """Where to cut ``data`` into about equal ``parts``: just inside record breaks (as
    ``find_break`` finds them), so that each part but the first starts with an empty line."""
    cuts: list[int] = []
    for index in range(1, parts):
        start = max(len(data) * index // parts, cuts[-1] if cuts else 0)
        found = find_break(data, start)
        if found < 0:
            break
        cuts.append(found + 1)
    return cuts


def fold_in_parts(collapser: Collapser, data: bytes | mmap, parts: int) -> Folded:
    """Fold ``data`` with ``parts - 1`` forked helpers; the same result as one process.
    ``data`` may be a map of a file for a collapser that reads one where it lies
    (``feed_range``): the children then fold their parts of it uncopied."""
    cuts = cut_points(data, parts, getattr(collapser, "part_break", record_break))
    if not cuts:
        feed_part(collapser, data, 0, len(data))
        return collapser.finish()
    bounds = list(zip([0, *cuts], [*cuts, len(data)], strict=True))
    children = [fork_part(collapser, data, start, end) for start, end in bounds[1:]]
    feed_part(collapser, data, 0, cuts[0])
    results = [child_result(child, pipe) for child, pipe in children]
    theirs: list[Folded] = []
    for (start, end), result in zip(bounds[1:], results, strict=True):
        if result is not None and same_event(event_of(collapser), result[0]):
            theirs.append(Folded(result[1]))
        else:
            feed_part(collapser, data, start, end)  # fold that part here after all
    folded = collapser.finish()
    for other in theirs:
        folded.update(other)
    return folded


def feed_part(collapser: Collapser, data: bytes | mmap, start: int, end: int) -> None:
    """``collapser.feed(data[start:end])``, uncopied where the collapser reads ranges."""
    feed_range = getattr(collapser, "feed_range", None)
    if feed_range is not None:
        feed_range(data, start, end)
    else:
        collapser.feed(data[start:end])


def fork_part(collapser: Collapser, data: bytes | mmap, start: int, end: int) -> tuple[int, int]:
    """Fold ``data[start:end]`` in a forked child; its pid and the pipe its result comes
    through."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.close(read_end)
        code = 1
        retire_into([])  # this process ends by os._exit: freeing caches one by one is waste
        try:
            feed_part(collapser, data, start, end)
            result: PartResult = (event_of(collapser), collapser.finish().counts)
            with os.fdopen(write_end, "wb") as out:
                out.write(marshal.dumps(result))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return child, read_end


def event_of(collapser: Collapser) -> str | None:
    """The event a collapser kept, for those that keep one (perf); else None."""
    event = getattr(collapser, "event_filter", None)
    return event if isinstance(event, str) else None


def same_event(mine: str | None, theirs: str | None) -> bool:
    """Do a child's stacks count? Yes if it kept the event kept here, or none. A part
    after one without events is folded here, which then keeps its first event."""
    return theirs is None or mine == theirs


def child_result(child: int, read_end: int) -> PartResult | None:
    """What a forked child wrote to its pipe; None if it failed (out of memory?)."""
    with os.fdopen(read_end, "rb") as results:
        payload = results.read()
    _, status = os.waitpid(child, 0)
    if status != 0:
        return None
    try:
        result: PartResult | None = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return result
