"""Input and output at the command line's edge: files, stdin, gzip, atomic writes."""

from __future__ import annotations

import gzip
import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol, runtime_checkable

from flamed.collapse.common import Collapser
from flamed.collapse.errors import InputError
from flamed.collapse.folded import Folded

CHUNK_SIZE = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
# Plain files this large are folded on two cores (when there are two).
FORK_MIN_BYTES = 8 << 20
FORK_MAX_BYTES = 2 << 30
# Records are separated by a blank line; a forked worker starts after one.
RECORD_BREAK = b"\n\n"


@runtime_checkable
class Detachable(Collapser, Protocol):
    """A collapser whose learnt state can be kept while its counts start again."""

    def detach(self) -> None: ...


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
    """Fold FILE; a large plain file is split in two halves folded on two cores."""
    if isinstance(collapser, Detachable) and worth_forking(path):
        with open_input(path) as stream:
            return fold_on_two_cores(collapser, stream.read())
    return collapse_file(collapser, path)


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


def fold_on_two_cores(collapser: Detachable, data: bytes) -> Folded:
    """Fold the first half here and the second half in a forked child, then merge.

    The parent folds a head of the input before forking, so the child starts
    with what the collapser learnt from it (the default event filter, caches).
    """
    head = data.find(RECORD_BREAK, 1 << 16)
    cut = data.find(RECORD_BREAK, len(data) // 2)
    if head < 0 or cut <= head:
        collapser.feed(data)
        return collapser.finish()
    collapser.feed(data[: head + 2])
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.close(read_end)
        collapser.detach()
        collapser.feed(data[cut + 2 :])
        with os.fdopen(write_end, "wb") as out:
            out.write(pickle.dumps(collapser.finish().counts))
        os._exit(0)
    os.close(write_end)
    collapser.feed(data[head + 2 : cut + 2])
    with os.fdopen(read_end, "rb") as results:
        payload = results.read()
    _, status = os.waitpid(child, 0)
    folded = collapser.finish()
    if status != 0 or not payload:
        # The child failed (out of memory?): fold its half here instead.
        collapser.detach()
        collapser.feed(data[cut + 2 :])
        folded.update(collapser.finish())
        return folded
    folded.update(Folded(pickle.loads(payload)))
    return folded


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def write_atomic(path: str, data: bytes) -> None:
    """Write a file under a temporary name in the same folder, then rename it into place."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".flamed-", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror or err}") from err
