"""File watching: the config file (reload on change) and the inbox folder.

watchdog's observer thread only forwards paths to the event loop; the loop does
the work. The config's folder is watched (editors replace files by renaming),
and events for other names are ignored. Inbox files are taken when closed after
writing or renamed into the folder; names starting with ``.`` or ending in
``.tmp`` are never read, so ``write x.tmp; mv x.tmp system.folded`` is safe.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import io
import logging
import os
import stat
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from flamed.collapse.errors import InputError
from flamed.collapse.folded import Folded

if TYPE_CHECKING:
    from flamed.daemon.service import Service

log = logging.getLogger("flamed.daemon.watch")

INBOX_QUEUE = 1000
INBOX_MAX_BYTES = 1 << 30
SUFFIXES = (".gz", ".txt", ".folded", ".perf", ".stacks", ".out", ".dtrace", ".collapsed")


Callback = Callable[[str], None]


def decode_path(path: bytes | str) -> str:
    return os.fsdecode(path)


class _Forward(FileSystemEventHandler):
    """Runs ``callback(path)`` on the loop for the events that matter."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callback, config: bool) -> None:
        self.loop = loop
        self.callback = callback
        self.config = config

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            path = decode_path(event.dest_path)
        elif isinstance(event, FileClosedEvent) or (self.config and is_write(event)):
            path = decode_path(event.src_path)
        else:
            return
        self.loop.call_soon_threadsafe(self.callback, path)


def is_write(event: FileSystemEvent) -> bool:
    """A change of content. Opening or reading a file (as a reload itself does) is not:
    reacting to those made every reload trigger the next one."""
    return isinstance(event, FileModifiedEvent | FileCreatedEvent | FileClosedEvent)


class Watchers:
    """The observer thread with the config and inbox watches of one service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.observer: Observer | None = None  # type: ignore[valid-type]
        self.inbox: Inbox | None = None
        self.config_path = (
            os.path.realpath(service.config_path) if service.config_path is not None else None
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        observer = Observer()
        if self.config_path is not None:
            folder = os.path.dirname(self.config_path)
            observer.schedule(_Forward(loop, self._config_event, True), folder, recursive=False)
        inbox_dir = self.service.config.storage.inbox
        if inbox_dir is not None:
            self.inbox = Inbox(Path(inbox_dir), self.service)
            await self.inbox.start()
            handler = _Forward(loop, self.inbox.offer, False)
            observer.schedule(handler, str(self.inbox.folder), recursive=False)
        if self.config_path is None and self.inbox is None:
            return
        await asyncio.to_thread(observer.start)
        self.observer = observer

    def _config_event(self, path: str) -> None:
        if os.path.realpath(path) == self.config_path:
            self.service.request_reload()

    async def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            await asyncio.to_thread(self.observer.join, 5.0)
        if self.inbox is not None:
            await self.inbox.stop()


class Inbox:
    """Folds files dropped in a folder into the target named by the file's stem."""

    def __init__(self, folder: Path, service: Service) -> None:
        self.folder = folder
        self.service = service
        self.queue: asyncio.Queue[Path] = asyncio.Queue(INBOX_QUEUE)
        self.pending: set[Path] = set()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.folder.mkdir, parents=True, exist_ok=True)
        self.task = asyncio.create_task(self._worker(), name="flamed-inbox")
        for path in sorted(await asyncio.to_thread(list, self.folder.iterdir())):
            self.offer(str(path))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def offer(self, path_text: str) -> None:
        path = Path(path_text)
        if path.parent.resolve() != self.folder.resolve() or not wanted(path.name):
            return
        if path in self.pending:
            return
        try:
            self.queue.put_nowait(path)
        except asyncio.QueueFull:
            log.warning("inbox: too many files waiting; %s is taken at the next start", path.name)
            return
        self.pending.add(path)

    async def _worker(self) -> None:
        while True:
            path = await self.queue.get()
            try:
                await self.take(path)
            except OSError as err:
                log.error("inbox: %s: %s", path.name, err.strerror or err)
            finally:
                self.pending.discard(path)

    async def take(self, path: Path) -> None:
        name = self.target_of(path.name)
        if name is None:
            log.warning("inbox: %s names no configured target; renamed to .rejected", path.name)
            await asyncio.to_thread(os.replace, path, path.with_name(path.name + ".rejected"))
            return
        result = await asyncio.to_thread(fold_file, path)
        if result is None:
            return
        folded, fmt, nbytes, cpu = result
        self.service.ingest(name, folded, fmt, nbytes, cpu)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info("inbox: folded %s (%s, %d stacks) into %s", path.name, fmt, len(folded), name)

    def target_of(self, file_name: str) -> str | None:
        known = self.service.targets
        stem = file_name
        while True:
            if stem in known:
                return stem
            suffix = next((s for s in SUFFIXES if stem.endswith(s)), None)
            if suffix is None:
                return None
            stem = stem[: -len(suffix)]


def wanted(name: str) -> bool:
    return not (name.startswith(".") or name.endswith((".tmp", ".rejected")))


def fold_file(path: Path) -> tuple[Folded, str, int, float] | None:
    """Read, unpack and fold one inbox file (blocking); None if it vanished."""
    started = time.thread_time()
    try:
        data = read_regular(path, INBOX_MAX_BYTES)
    except FileNotFoundError:
        return None
    except NotRegular as err:
        log.warning("inbox: %s is %s, not a file; renamed to .rejected", path.name, err)
        os.replace(path, path.with_name(path.name + ".rejected"))
        return None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gunzip(data, INBOX_MAX_BYTES)
        except (OSError, EOFError, zlib.error) as err:
            log.warning("inbox: %s is not valid gzip (%s); skipped", path.name, err)
            os.replace(path, path.with_name(path.name + ".rejected"))
            return None
    try:
        fmt, folded = collapse_guessed(data)
    except InputError as err:
        log.warning("inbox: %s: %s; renamed to .rejected", path.name, err)
        os.replace(path, path.with_name(path.name + ".rejected"))
        return None
    return folded, fmt, len(data), time.thread_time() - started


class NotRegular(Exception):
    """An inbox entry that is a symlink, FIFO, device or folder."""


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file, never through a symlink.

    The inbox may be writable by others: a planted symlink must not make the
    daemon read (and serve as a profile) a file elsewhere, nor a FIFO block it.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotRegular("a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular("a special file")
        return file.read(limit)


def gunzip(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes unpacked (a small gzip bomb cannot exhaust memory)."""
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as unpacked:
        return unpacked.read(limit)


def collapse_guessed(data: bytes) -> tuple[str, Folded]:
    """Guess the format (folded, perf script, DTrace) and fold the text."""
    from flamed.collapse.guess import GuessCollapser

    collapser = GuessCollapser()
    collapser.feed(data)
    folded = collapser.finish()
    return (collapser.format.name if collapser.format else "folded"), folded
