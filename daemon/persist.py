"""Bucket files: their format, the one writer, and the reads at start and for cold buckets.

Each completed bucket is written to ``state_dir/<target>/<start_ms>-<end_ms>.folded.gz``
(an off-CPU one under ``state_dir/<target>/offcpu/``: the ``target`` this module is
given is the window's name, ``flamed.daemon.service.window_name``)
(gzip-compressed folded text after a ``# flamed bucket samples=N`` line) under
a temporary name and renamed into place, and read back at start, so a restart
loses at most the bucket in flight. A file that cannot be read is skipped with
a warning; a symlink planted as a target's folder is never followed.

``DiskStore`` does the blocking I/O. ``BucketWriter`` runs its writes, roll-up
replacements and deletions in order in a worker thread, through one bounded
queue. A failed write is counted by operation and errno, logged once per kind
(at most every ``DISK_LOG_EVERY`` seconds), and its bucket kept whole in memory
(``unsaved``) until a later write succeeds: then it is written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import logging
import os
import re
import tempfile
import zlib
from array import array
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from flamed.collapse.folded import Folded, read_folded
from flamed.daemon.ratelimit import LogLimiter
from flamed.daemon.store import Bucket, make_bucket

if TYPE_CHECKING:
    from prometheus_client import Counter

log = logging.getLogger("flamed.daemon.persist")

FILE_NAME = re.compile(r"(\d+)-(\d+)\.folded\.gz")
HEADER = "# flamed bucket "
"""First line of a bucket file, with what the folded text cannot say (the sample count)."""
WRITE_QUEUE = 256
DISK_LOG_EVERY = 600.0
"""Seconds between two log lines for the same kind of disk error (a full disk flaps)."""

Op = Literal["write", "replace", "delete"]


class DiskStore:
    """Bucket files under ``state_dir/<target>/``; every method does blocking I/O."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.root = Path(state_dir)

    def folder(self, target: str) -> Path:
        """``state_dir/<target>`` (``<target>/offcpu``), never through a symlink planted there
        (OSError)."""
        folder = self.root
        for part in target.split("/"):
            folder = folder / part
            if folder.is_symlink():
                reason = "a symlink in the state directory is not followed"
                raise OSError(errno.ELOOP, reason, folder)
        return folder

    def write(self, target: str, bucket: Bucket) -> None:
        folder = self.folder(target)
        folder.mkdir(parents=True, exist_ok=True)
        header = f"{HEADER}samples={bucket.samples}\n".encode()
        data = gzip.compress(header + bucket.folded().to_bytes(), compresslevel=6, mtime=0)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, folder / bucket.file_name())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, target: str, buckets: Sequence[Bucket]) -> None:
        try:
            folder = self.folder(target)
        except OSError:
            return
        for bucket in buckets:
            (folder / bucket.file_name()).unlink(missing_ok=True)

    def read(self, target: str, bucket: Bucket) -> Folded | None:
        """A cold bucket's stacks, or None (with a warning) if its file is unreadable."""
        try:
            path = self.folder(target) / bucket.file_name()
        except OSError as err:
            log.warning("skipping bucket of %s: %s", target, err)
            return None
        data = self._read(path)
        return None if data is None else read_folded(split_header(data)[1])

    def _read(self, path: Path) -> bytes | None:
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as err:
            log.warning("skipping unreadable bucket file %s: %s", path, err)
            return None

    def load(
        self, target: str, since: float, max_stacks: int, hot_since: float = 0.0
    ) -> list[Bucket]:
        """Read the target's bucket files that end after ``since``; delete older ones.

        Buckets that ended before ``hot_since`` are loaded cold (their sample
        count only); their stacks are read again when a query needs them.
        """
        try:
            folder = self.folder(target)
        except OSError as err:
            log.warning("not loading %s: %s", target, err)
            return []
        if not folder.is_dir():
            return []
        loaded = []
        for path in sorted(folder.iterdir()):
            bucket = self._load_one(path, since, max_stacks, hot_since)
            if bucket is not None:
                loaded.append(bucket)
        return self._drop_contained(target, loaded)

    def _drop_contained(self, target: str, buckets: list[Bucket]) -> list[Bucket]:
        """Buckets inside a rolled-up one (a crash between writing it and deleting them)."""
        buckets.sort(key=lambda b: (b.start, b.start - b.end))
        kept: list[Bucket] = []
        for bucket in buckets:
            if kept and bucket.start >= kept[-1].start and bucket.end <= kept[-1].end:
                self.delete(target, [bucket])
                continue
            kept.append(bucket)
        return kept

    def _load_one(
        self, path: Path, since: float, max_stacks: int, hot_since: float
    ) -> Bucket | None:
        match = FILE_NAME.fullmatch(path.name)
        if match is None:
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # left by a crash mid-write
            return None
        start, end = int(match.group(1)) / 1000, int(match.group(2)) / 1000
        if end <= since:
            path.unlink(missing_ok=True)
            return None
        if end <= hot_since:
            samples = read_samples(path)
            return None if samples is None else Bucket(start, end, (), array("d"), samples, True)
        data = self._read(path)
        if data is None:
            return None
        samples, body = split_header(data)
        return make_bucket(start, end, read_folded(body), max_stacks, samples)


def split_header(data: bytes) -> tuple[int | None, bytes]:
    """(the sample count from the header line, the folded text)."""
    if not data.startswith(HEADER.encode()):
        return None, data
    first, _, body = data.partition(b"\n")
    found = re.search(rb"samples=(\d+)", first)
    return (int(found.group(1)) if found else None), body


def read_samples(path: Path) -> int | None:
    """The sample count of a bucket file from its first line; None if unreadable."""
    try:
        with gzip.open(path, "rb") as stream:
            first = stream.readline(200)
    except (OSError, EOFError, zlib.error) as err:
        log.warning("skipping unreadable bucket file %s: %s", path, err)
        return None
    samples, _ = split_header(first)
    return 0 if samples is None else samples


def files_written(op: Op, buckets: Sequence[Bucket]) -> int:
    """Bucket files an operation writes: each bucket of a write, a roll-up's new one."""
    return len(buckets) if op == "write" else int(op == "replace")


def written_keys(op: Op, buckets: Sequence[Bucket]) -> list[int]:
    """The keys of the bucket files an operation writes (see ``files_written``)."""
    return [bucket.key for bucket in buckets[: files_written(op, buckets)]]


class BucketWriter:
    """Writes, replaces and deletes bucket files in order, off the event loop.

    ``errors`` is ``flamed_disk_errors_total{op,reason}``; ``kept(target)`` gives
    the target's buckets in memory (to write again those a failure left
    unsaved); ``on_backlog(target)`` counts a write refused because the queue
    was full (that bucket then stays in memory only).
    Without a ``disk`` (``persist = False``) every call does nothing.
    """

    def __init__(
        self,
        disk: DiskStore | None,
        errors: Counter,
        kept: Callable[[str], Sequence[Bucket]],
        on_backlog: Callable[[str], None],
    ) -> None:
        self.disk = disk
        self.errors = errors
        self.kept = kept
        self.on_backlog = on_backlog
        self._queue: asyncio.Queue[tuple[Op, str, list[Bucket]]] = asyncio.Queue(WRITE_QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._unsaved: dict[str, set[int]] = {}
        """Keys of buckets whose file could not be written: kept in memory, written again later."""
        self._failing = False
        self._logged = LogLimiter(DISK_LOG_EVERY)
        """Each kind of disk error, (operation, errno name), is logged at most this often."""
        self._told = False
        """A disk error was logged since the last "written again"."""
        self.written = 0
        """Bucket files written since start (roll-ups included)."""
        self._waiting = 0
        """Bucket files queued to be written."""
        self._queued: dict[str, dict[int, int]] = {}
        """Keys of the buckets each target has waiting in the queue (kept whole meanwhile)."""

    # -- the event loop's side -------------------------------------------------------------

    def write(self, target: str, buckets: Sequence[Bucket]) -> None:
        self._put("write", target, list(buckets))

    def replace(self, target: str, coarse: Bucket, members: Sequence[Bucket]) -> None:
        """A roll-up: the new file first, then the ones it replaces."""
        self._put("replace", target, [coarse, *members])

    def delete(self, target: str, buckets: Sequence[Bucket]) -> None:
        """Past the retention: deleted, and never written again."""
        self._put("delete", target, list(buckets))
        unsaved = self._unsaved.get(target)
        if unsaved is not None:
            unsaved.difference_update(bucket.key for bucket in buckets)

    def pending(self) -> int:
        """Buckets not on disk yet: waiting in the queue, or kept after a failed write."""
        return self._waiting + sum(len(keys) for keys in self._unsaved.values())

    def unsaved(self, target: str) -> Collection[int]:
        """Keys of the target's buckets whose files are not written yet (keep them whole):
        waiting in the queue, or kept after a failed write."""
        queued = self._queued.get(target)
        if not queued:
            return self._unsaved.get(target, ())
        return self._unsaved.get(target, set()) | queued.keys()

    def forget(self, target: str) -> None:
        """The target's history has expired: nothing of it is written again."""
        self._unsaved.pop(target, None)

    def start(self) -> None:
        if self.disk is not None:
            self._task = asyncio.create_task(self._run(), name="flamed-writer")

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued operation ran (at most ``timeout`` seconds)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def stop(self, timeout: float) -> None:
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _put(self, op: Op, target: str, buckets: list[Bucket]) -> None:
        if self.disk is None:
            return
        try:
            self._queue.put_nowait((op, target, buckets))
            self._waiting += files_written(op, buckets)
            queued = self._queued.setdefault(target, {})
            for key in written_keys(op, buckets):
                queued[key] = queued.get(key, 0) + 1
        except asyncio.QueueFull:
            self.on_backlog(target)
            log.warning(
                "target %s: disk writes are behind; a bucket is kept in memory only", target
            )

    # -- the worker ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            op, target, buckets = await self._queue.get()
            try:
                await asyncio.to_thread(self._perform, op, target, buckets)
            except OSError as err:
                self._failed(op, target, buckets, err)
            else:
                self.written += files_written(op, buckets)
                self._done(op, target, buckets)
            finally:
                self._waiting -= files_written(op, buckets)
                self._dequeued(target, written_keys(op, buckets))
                self._queue.task_done()

    def _dequeued(self, target: str, keys: list[int]) -> None:
        queued = self._queued.get(target, {})
        for key in keys:
            if queued.get(key, 0) > 1:
                queued[key] -= 1
            else:
                queued.pop(key, None)
        if not queued:
            self._queued.pop(target, None)

    def _perform(self, op: Op, target: str, buckets: list[Bucket]) -> None:
        disk = self.disk
        assert disk is not None
        if op == "write":
            for bucket in buckets:
                disk.write(target, bucket)
        elif op == "replace":
            disk.write(target, buckets[0])
            disk.delete(target, buckets[1:])
        else:
            disk.delete(target, buckets)

    def _failed(self, op: Op, target: str, buckets: list[Bucket], err: OSError) -> None:
        """Count it; log it once per kind until writes work again; keep the bucket in memory."""
        reason = errno.errorcode.get(err.errno or 0, "other")
        self.errors.labels(op, reason).inc()
        if op != "delete":
            unsaved = self._unsaved.setdefault(target, set())
            if op == "replace":  # the roll-up replaced its members in memory
                unsaved.difference_update(bucket.key for bucket in buckets[1:])
            unsaved.add(buckets[0].key)
        self._failing = True
        if not self._logged.allow((op, reason)):
            return
        self._told = True
        log.error(
            "target %s: cannot %s bucket files: %s (buckets are kept in memory and written "
            "when the disk allows; this error is logged at most every %g s)",
            target, op, err.strerror or err, DISK_LOG_EVERY,
        )  # fmt: skip

    def _done(self, op: Op, target: str, buckets: list[Bucket]) -> None:
        unsaved = self._unsaved.get(target)
        if unsaved is not None:
            unsaved.difference_update(bucket.key for bucket in buckets)
        if not self._failing or op == "delete":
            return
        self._failing = False
        if self._told:
            self._told = False
            log.warning("bucket files are written again; writing the buckets kept in memory")
        for name, keys in self._unsaved.items():
            kept = [bucket for bucket in self.kept(name) if bucket.key in keys]
            keys.intersection_update(bucket.key for bucket in kept)
            if kept:
                self.write(name, kept)
