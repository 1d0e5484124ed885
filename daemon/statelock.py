"""One daemon per state folder: an exclusive lock on ``state_dir/.lock``, held for its life.

A second ``flamed run`` on the same folder (the same config, or another
``--listen``) would write into the same target folders, breaking the first
one's files. ``lock_state_dir`` is taken
before anything touches the folder; a second daemon gets a ``FlamedError``
naming the folder and the pid written in the lock file by the one holding it.
The lock is ``flock``'s: the kernel drops it when the holder exits, however it
exits, so a stale file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from flamed.collapse.errors import FlamedError

LOCK_NAME = ".lock"


class StateLock:
    """The held lock (a context manager); ``release()``, leaving the ``with`` block or the
    process's end lets another daemon in."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def __enter__(self) -> StateLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def lock_state_dir(state_dir: str | os.PathLike[str]) -> StateLock:
    """Create the folder if needed and lock it, or raise FlamedError saying who holds it."""
    folder = Path(state_dir)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise FlamedError(f"cannot use state folder {folder}: {err.strerror or err}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = read_holder(fd)
        os.close(fd)
        raise FlamedError(
            f"state folder {folder} is in use by another flamed ({holder}); stop it, "
            "or give this one its own [storage] state_dir"
        ) from None
    except OSError as err:
        os.close(fd)
        raise FlamedError(f"cannot lock state folder {folder}: {err.strerror or err}") from None
    write_holder(fd)
    return StateLock(path, fd)


def read_holder(fd: int) -> str:
    """``pid N`` from the lock file, as its holder wrote it."""
    with contextlib.suppress(OSError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"pid {text}"
    return "pid unknown"


def write_holder(fd: int) -> None:
    """Our pid in the lock file, for the message a second daemon prints."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
