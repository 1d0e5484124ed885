"""Input and output at the command line's edge: files, stdin, gzip, atomic writes."""

from __future__ import annotations

import errno
import os
import sys
from stat import S_ISREG

from flamed.collapse.common import TYPE_CHECKING, Collapser
from flamed.collapse.errors import InputError
from flamed.collapse.folded import Folded

if TYPE_CHECKING:
    from collections.abc import Iterator
    from gzip import GzipFile
    from mmap import mmap
    from typing import BinaryIO


EXIT_NO_SAMPLES = 2
"""Exit status when there was nothing to draw or write (flamegraph.pl's)."""
CHUNK_SIZE = 1 << 20
KEPT: list[object] = []
"""What a one-shot (FAST_EXIT) command leaves for the end of the process to drop: freeing
a large graph's ~100k objects one by one, as its locals go, cost ~8% of `flamed
flamegraph`, and `flamed` exits without freeing them. ``cli.main``, which may run many
commands in one process, empties it after each."""
GZIP_MAGIC = b"\x1f\x8b"


class InputStream:
    """``with open_input(path) as stream``: FILE opened for reading bytes, gzip-compressed
    files unpacked; ``-`` is stdin, left open after. (A class, not contextlib's decorator:
    importing contextlib cost start-up time in every command.)"""

    def __init__(self, path: str) -> None:
        self.path = path
        self._opened: list[BinaryIO | GzipFile] = []

    def __enter__(self) -> BinaryIO:
        if self.path == "-":
            return sys.stdin.buffer
        try:
            raw = open(self.path, "rb")
        except OSError as err:
            raise InputError(f"cannot read {self.path}: {err.strerror or err}") from err
        self._opened.append(raw)
        if raw.peek(2)[:2] != GZIP_MAGIC:
            return raw
        import gzip  # only when needed: start-up time counts

        unpacked = gzip.GzipFile(fileobj=raw)
        self._opened.append(unpacked)
        return unpacked  # type: ignore[return-value]  # reads bytes as a BinaryIO does

    def __exit__(self, *exc: object) -> None:
        while self._opened:
            self._opened.pop().close()


def open_input(path: str) -> InputStream:
    """Open FILE for reading bytes, ``-`` for stdin; gzip-compressed files are unpacked."""
    return InputStream(path)


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


def map_file(path: str, limit: int) -> mmap | None:
    """A read-only map of FILE, when it is a regular file of 1 to ``limit`` bytes and not
    gzip-compressed; else None (stdin, pipes, gzip, empty or larger files are read).
    A collapser that reads its input where it lies folds a map without copying it:
    reading 3 MB cost ~2 ms of fresh pages, zeroed, then filled."""
    if path == "-":
        return None
    import mmap as mmap_module  # only when mapping: start-up time counts

    try:
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            if not S_ISREG(status.st_mode) or not 0 < status.st_size <= limit:
                return None
            mapped = mmap_module.mmap(file.fileno(), 0, access=mmap_module.ACCESS_READ)
    except (OSError, ValueError):
        return None  # the reader reports it
    if mapped[:2] == GZIP_MAGIC:
        mapped.close()
        return None
    return mapped


def plain_file_size(path: str) -> int | None:
    """The size of FILE if it is a plain file (not stdin, not gzip-compressed), else None."""
    if path == "-":
        return None
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as probe:
            compressed = probe.read(2) == GZIP_MAGIC
    except OSError:
        return None  # the reader reports it
    return None if compressed else size


def read_whole(path: str) -> bytes:
    """All the bytes of FILE, with read errors as InputError."""
    with open_input(path) as stream:
        try:
            return stream.read()
        except OSError as err:
            raise InputError(f"cannot read {path}: {err}") from err


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
            from contextlib import suppress  # only on failure: start-up time counts

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
