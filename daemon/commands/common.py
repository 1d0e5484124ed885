"""Input and output at the command line's edge: files, stdin, gzip, atomic writes."""

from __future__ import annotations

import errno
import marshal
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from flamed.collapse.common import TYPE_CHECKING, Collapser
from flamed.collapse.errors import InputError
from flamed.collapse.folded import Folded

if TYPE_CHECKING:
    from typing import BinaryIO, Protocol, TypeGuard

    from flamed.collapse.folded import Count
    from flamed.collapse.perf import Record

    PartResult = tuple[str | None, dict[str, Count]]
    """A forked child's result: the event it kept and its stacks."""

    class CountingCollapser(Collapser, Protocol):
        """A collapser that counts alike records of its input, then folds each
        distinct one once (``PerfCollapser``)."""

        @property
        def event_filter(self) -> str | None: ...

        @property
        def counts(self) -> dict[str, Count]: ...

        def count_records(
            self, data: bytes | memoryview
        ) -> tuple[bytes, dict[Record, int]] | None: ...

        def fold_counted(self, first: bytes, records: dict[Record, int]) -> None: ...


EXIT_NO_SAMPLES = 2
"""Exit status when there was nothing to draw or write (flamegraph.pl's)."""
CHUNK_SIZE = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
# Plain files this large are folded on two cores (when there are two).
FORK_MIN_BYTES = 8 << 20
FORK_MAX_BYTES = 2 << 30
# Records are separated by a blank line; a forked worker starts at one.
RECORD_BREAK = b"\n\n"


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """Open FILE for reading bytes, ``-`` for stdin; gzip-compressed files are unpacked."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        if raw.peek(2)[:2] == GZIP_MAGIC:
            import gzip  # only when needed: start-up time counts

            with gzip.GzipFile(fileobj=raw) as unpacked:
                yield unpacked  # type: ignore[misc]
        else:
            yield raw
    finally:
        raw.close()


def iter_chunks(path: str, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The bytes of FILE (or stdin) in chunks, with read errors as InputError."""
    with open_input(path) as stream:
        try:
            while chunk := stream.read(size):
                yield chunk
        except (OSError, EOFError) as err:
            raise InputError(f"cannot read {path}: {err}") from err


def collapse_file(collapser: Collapser, path: str) -> Folded:
    for chunk in iter_chunks(path):
        collapser.feed(chunk)
    return collapser.finish()


def collapse_path(collapser: Collapser, path: str) -> Folded:
    """Fold FILE; a large plain file is folded on two cores."""
    if is_counting(collapser) and worth_forking(path):
        with open_input(path) as stream:
            return fold_on_two_cores(collapser, stream.read())
    return collapse_file(collapser, path)


def is_counting(collapser: Collapser) -> TypeGuard[CountingCollapser]:
    return callable(getattr(collapser, "count_records", None))


def worth_forking(path: str) -> bool:
    if path == "-" or (os.cpu_count() or 1) < 2:
        return False
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as probe:
            compressed = probe.read(2) == GZIP_MAGIC
    except OSError:
        return False  # collapse_file reports it
    return FORK_MIN_BYTES <= size <= FORK_MAX_BYTES and not compressed


def fold_on_two_cores(collapser: CountingCollapser, data: bytes) -> Folded:
    """Fold the input with a forked child's help: the child counts and folds the
    records of the second half while this process does the first half's, then
    their stacks are added up.

    Records that occur in both halves are folded in both processes, at the same
    time, which costs less than one process folding them all after counting.
    The child's stacks count only if it kept the same event (by default the first
    one seen, which the child, starting in the middle, may see differently); if not,
    or if the child failed, this process folds the second half itself. Input that
    cannot be counted by alike records is folded here alone.
    """
    cut = data.find(RECORD_BREAK, len(data) // 2)
    if cut > 0:
        with memoryview(data) as view:  # parts without copies
            folded = fold_in_two_parts(collapser, view[: cut + 1], view[cut:])
        if folded is not None:
            return folded
    collapser.feed(data)
    return collapser.finish()


def fold_in_two_parts(
    collapser: CountingCollapser, head: memoryview, tail: memoryview
) -> Folded | None:
    """Fold ``head`` here and ``tail`` in a forked child; None, with nothing folded,
    when ``head`` cannot be counted by alike records."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.close(read_end)
        code = 1
        try:
            result: PartResult | None = None
            if fold_part(collapser, tail):
                result = collapser.event_filter, collapser.counts
            with os.fdopen(write_end, "wb") as out:
                out.write(marshal.dumps(result))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    folded_here = fold_part(collapser, head)
    theirs = child_result(child, read_end)
    if not folded_here:
        return None
    if theirs is None or not same_event(collapser.event_filter, theirs[0]):
        collapser.feed(bytes(tail))
        return collapser.finish()
    folded = collapser.finish()
    folded.update(Folded(theirs[1]))
    return folded


def fold_part(collapser: CountingCollapser, part: memoryview) -> bool:
    """Fold ``part`` by alike records; False, with nothing folded, if it cannot be."""
    counted = collapser.count_records(part)
    if counted is not None:
        collapser.fold_counted(*counted)
    return counted is not None


def same_event(mine: str | None, theirs: str | None) -> bool:
    """Did two parts keep the same event? None: a part saw no event to keep."""
    return mine is None or theirs is None or mine == theirs


def child_result(child: int, read_end: int) -> PartResult | None:
    """What the forked child wrote to the pipe; None if it failed (out of memory?)."""
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


def nothing_found(path: str, records: str, expected: str) -> InputError:
    """The input held nothing the command understands (empty, or not that format): one
    line saying what was expected, instead of empty output and exit 0."""
    name = "stdin" if path == "-" else path
    return InputError(f"no {records} in {name}; expected {expected}")


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def write_atomic(path: str, data: bytes) -> None:
    """Write a file under a temporary name in the same folder, then rename it into place.

    The file gets the mode a shell redirect gives (0666 less the umask), not mkstemp's
    0600: after ``sudo flamed record -o graph.svg`` the user can open the graph.
    """
    tmp = ""
    try:
        fd, tmp = create_beside(path)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as err:
        if tmp:
            with suppress(OSError):
                os.unlink(tmp)
        raise InputError(f"cannot write {path}: {err.strerror or err}") from err


def create_beside(path: str) -> tuple[int, str]:
    """A new file with an unused name in ``path``'s folder, opened for writing: (fd, name)."""
    folder = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(100):
        name = os.path.join(folder, f".flamed-{os.urandom(6).hex()}.tmp")
        try:
            return os.open(name, flags, 0o666), name  # the umask applies
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", folder)
