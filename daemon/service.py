"""The daemon's core: one sampling session per target, their windows, persistence, reloads.

``Service`` owns time (a clock parameter), the per-target ``Window``s, the disk
writer, and the sessions, which it builds with an injected ``SessionFactory``
(the real one is ``flamed.collector``'s; tests pass a fake that emits chunks).
A session whose ``run()`` ends or fails is restarted with a growing delay and
counted. Everything here runs on the event loop; blocking file I/O goes to a
worker thread through one bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flamed.collapse.errors import FlamedError
from flamed.collapse.folded import Folded
from flamed.collector.base import Chunk, ChunkSink, Session, SessionStatus, TargetSpec
from flamed.daemon.config import Config, load_config
from flamed.daemon.metrics import Metrics, TargetReading
from flamed.daemon.store import Bucket, DiskStore, Window, make_bucket

if TYPE_CHECKING:
    from flamed.daemon.export import Exporters

log = logging.getLogger("flamed.daemon")

WRITE_QUEUE = 256
STOP_TIMEOUT = 6.5
"""Seconds a sampler gets to stop (the collector's own limit, SESSION_STOP, comes first)."""
SESSION_STOP = 5.0
WRITES_TIMEOUT = 1.5
"""Seconds the last bucket files get at shutdown; with the above, exit within 10 s."""
RELOAD_SETTLE = 0.3
DISK_LOG_EVERY = 600.0
"""Seconds between two log lines for the same kind of disk error (a full disk flaps)."""
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class SessionFactory(Protocol):
    """Builds a session for one target; ``flamed.collector.create_session`` is one."""

    def __call__(
        self, spec: TargetSpec, *, bucket_seconds: float, on_chunk: ChunkSink
    ) -> Session: ...


@dataclass
class Target:
    """A configured target at run time: its spec, current session and supervisor task."""

    spec: TargetSpec
    session: Session | None = None
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    restarts: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def status(self) -> SessionStatus:
        return self.session.status if self.session is not None else SessionStatus()


class Service:
    """Sessions, windows and persistence for one config; ``apply`` swaps configs live."""

    def __init__(
        self,
        config: Config,
        *,
        session_factory: SessionFactory,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        config_path: str | None = None,
        persist: bool = True,
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.clock = clock
        self.config_path = config_path
        self.metrics = metrics if metrics is not None else Metrics(process=False)
        self.metrics.target_collector.read = self.readings
        self.disk = DiskStore(config.storage.state_dir) if persist else None
        self.windows: dict[str, Window] = {}
        self.targets: dict[str, Target] = {}
        self.started = False
        self._writes: asyncio.Queue[tuple[str, str, list[Bucket]]] = asyncio.Queue(WRITE_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._apply_lock = asyncio.Lock()
        self._reload_wanted = asyncio.Event()
        self._loading: set[str] = set()
        self._unsaved: dict[str, set[int]] = {}
        """Keys of buckets whose file could not be written: kept in memory, written again later."""
        self._disk_failing = False
        self._disk_logged: dict[tuple[str, str], float] = {}
        """When (monotonic) each kind of disk error, (operation, errno name), was last logged."""
        self._disk_told = False
        """A disk error was logged since the last "written again"."""
        self.retired: set[str] = set()
        """Targets removed by a reload whose window stays queryable until its buckets expire."""
        self.exporters: Exporters | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._tasks = [
            asyncio.create_task(self._writer(), name="flamed-writer"),
            asyncio.create_task(self._pruner(), name="flamed-pruner"),
            asyncio.create_task(self._reloader(), name="flamed-reloader"),
        ]
        for spec in self.config.targets:
            await self._add_target(spec)
        await self._start_exporters()
        self.started = True

    async def stop(self) -> None:
        """Stop every session (each flushes its last bucket), then finish the writes."""
        await asyncio.gather(*(self._stop_target(t) for t in list(self.targets.values())))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._writes.join(), WRITES_TIMEOUT)
        await self._stop_exporters()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- targets ---------------------------------------------------------------------------

    async def _add_target(self, spec: TargetSpec) -> None:
        if spec.name not in self.windows:
            self.windows[spec.name] = self._new_window(spec.name)
            self._loading.add(spec.name)
            self._tasks.append(asyncio.create_task(self._load_window(spec.name)))
        target = Target(spec)
        self.targets[spec.name] = target
        target.task = asyncio.create_task(self._supervise(target), name=f"flamed-{spec.name}")

    def _new_window(self, name: str) -> Window:
        disk = self.disk
        read = (lambda bucket: disk.read(name, bucket)) if disk is not None else None
        return Window(name, self.config.storage.max_stacks, read)

    def _hot_since(self) -> float:
        """Buckets that ended before this keep their stacks on disk only."""
        storage = self.config.storage
        return self.clock() - storage.rollup_after - storage.rollup

    async def _load_window(self, name: str) -> None:
        """Read the target's bucket files in a thread while sampling and serving go on."""
        storage = self.config.storage
        try:
            if self.disk is None:
                return
            since = self.clock() - storage.retention
            buckets = await asyncio.to_thread(
                self.disk.load, name, since, storage.max_stacks, self._hot_since()
            )
            window = self.windows.get(name)
            if window is not None and buckets:
                window.add_many(buckets)
                log.info("target %s: loaded %d buckets from disk", name, len(buckets))
        except OSError as err:
            log.error("target %s: cannot read its bucket files: %s", name, err.strerror or err)
        finally:
            self._loading.discard(name)

    async def _supervise(self, target: Target) -> None:
        failures = 0
        while not target.stopping:
            try:
                session = self._make_session(target.spec)
            except FlamedError as err:
                target.session = FailedSession(target.spec, str(err))
                log.error("target %s: %s", target.spec.name, err)
                reason = "error"
            else:
                target.session = session
                reason = await self._run_session(session)
            if target.stopping:
                break
            target.restarts[reason] += 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            failures += 1
            log.warning(
                "target %s: sampler ended (%s); restarting in %gs", target.spec.name, reason, delay
            )
            await asyncio.sleep(delay)

    def _make_session(self, spec: TargetSpec) -> Session:
        return self.session_factory(
            spec, bucket_seconds=self.config.storage.bucket, on_chunk=self.on_chunk
        )

    async def _run_session(self, session: Session) -> str:
        """Run a session to its end; the restart reason if it ended by itself."""
        try:
            await session.run()
        except FlamedError as err:
            self._session_failed(session, str(err))
            return "error"
        except Exception as err:  # a bug in a session must not take the daemon down
            log.exception("target %s: sampler crashed", session.spec.name)
            self._session_failed(session, f"{type(err).__name__}: {err}")
            return "crash"
        return "exit"

    def _session_failed(self, session: Session, message: str) -> None:
        session.status.state = "error"
        session.status.last_error = message
        log.error("target %s: %s", session.spec.name, message)

    async def _stop_target(self, target: Target) -> None:
        target.stopping = True
        name = target.spec.name
        if target.session is not None:
            try:
                await asyncio.wait_for(target.session.stop(), STOP_TIMEOUT)
            except (TimeoutError, FlamedError, OSError) as err:
                log.warning("target %s: stopping the sampler: %s", name, str(err) or "timed out")
        if target.task is not None:
            done, _ = await asyncio.wait([target.task], timeout=2.0)
            if not done:
                target.task.cancel()
                await asyncio.gather(target.task, return_exceptions=True)

    # -- chunks ----------------------------------------------------------------------------

    def on_chunk(self, chunk: Chunk) -> None:
        """The sessions' sink; safe to call from another thread."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._thread:
            loop.call_soon_threadsafe(self._take_chunk, chunk)
        else:
            self._take_chunk(chunk)

    def _take_chunk(self, chunk: Chunk) -> None:
        target = self.targets.get(chunk.target)
        window = self.windows.get(chunk.target)
        if target is None or window is None:
            log.debug("chunk for unknown target %s dropped", chunk.target)
            return
        if chunk.end <= self.clock() - self.config.storage.retention:
            target.dropped["stale"] += 1
            return
        self.metrics.chunk_folded(
            chunk.target, chunk.format, chunk.bytes_folded, chunk.samples, chunk.cpu_seconds
        )
        bucket = make_bucket(chunk.start, chunk.end, chunk.folded, window.max_stacks, chunk.samples)
        self._queue_write("write", chunk.target, [window.add(bucket)], target)
        if self.exporters is not None:
            self.exporters.submit(chunk.target, bucket, target.spec.frequency)

    def ingest(self, name: str, folded: Folded, fmt: str, nbytes: int, cpu: float) -> None:
        """Fold a profile from outside (the inbox) into the current bucket of ``name``."""
        size = self.config.storage.bucket
        start = math.floor(self.clock() / size) * size
        samples = int(folded.total())
        self._take_chunk(Chunk(name, start, start + size, folded, samples, nbytes, cpu, fmt))

    def _queue_write(
        self, op: str, name: str, buckets: list[Bucket], target: Target | None
    ) -> None:
        if self.disk is None:
            return
        try:
            self._writes.put_nowait((op, name, buckets))
        except asyncio.QueueFull:
            if target is not None:
                target.dropped["disk_backlog"] += 1
            log.warning("target %s: disk writes are behind; a bucket is kept in memory only", name)

    async def _writer(self) -> None:
        while True:
            op, name, buckets = await self._writes.get()
            try:
                await asyncio.to_thread(self._write_now, op, name, buckets)
            except OSError as err:
                self._write_failed(op, name, buckets, err)
            else:
                self._write_done(op, name, buckets)
            finally:
                self._writes.task_done()

    def _write_failed(self, op: str, name: str, buckets: list[Bucket], err: OSError) -> None:
        """Count it; log it once per kind until writes work again; keep the bucket in memory."""
        reason = errno.errorcode.get(err.errno or 0, "other")
        self.metrics.disk_errors.labels(op, reason).inc()
        if op in ("write", "replace"):
            unsaved = self._unsaved.setdefault(name, set())
            if op == "replace":  # the roll-up replaced its members in memory
                unsaved.difference_update(bucket.key for bucket in buckets[1:])
            unsaved.add(buckets[0].key)
        self._disk_failing = True
        now = time.monotonic()
        if now - self._disk_logged.get((op, reason), -math.inf) < DISK_LOG_EVERY:
            return
        self._disk_logged[(op, reason)] = now
        self._disk_told = True
        log.error(
            "target %s: cannot %s bucket files: %s (buckets are kept in memory and written "
            "when the disk allows; this error is logged at most every %g s)",
            name,
            op,
            err.strerror or err,
            DISK_LOG_EVERY,
        )

    def _write_done(self, op: str, name: str, buckets: list[Bucket]) -> None:
        unsaved = self._unsaved.get(name)
        if unsaved is not None:
            unsaved.difference_update(bucket.key for bucket in buckets)
        if not self._disk_failing or op == "delete":
            return
        self._disk_failing = False
        if self._disk_told:
            self._disk_told = False
            log.warning("bucket files are written again; writing the buckets kept in memory")
        for target, keys in self._unsaved.items():
            window = self.windows.get(target)
            kept = [b for b in window.buckets if b.key in keys] if window is not None else []
            keys.intersection_update(bucket.key for bucket in kept)
            if kept:
                self._queue_write("write", target, kept, self.targets.get(target))

    def _write_now(self, op: str, name: str, buckets: list[Bucket]) -> None:
        assert self.disk is not None
        if op == "write":
            for bucket in buckets:
                self.disk.write(name, bucket)
        elif op == "replace":  # a roll-up: the new file first, then the ones it replaces
            self.disk.write(name, buckets[0])
            self.disk.delete(name, buckets[1:])
        else:
            self.disk.delete(name, buckets)

    # -- exporters -------------------------------------------------------------------------

    async def _start_exporters(self) -> None:
        """Push every completed bucket to the configured receivers (if any)."""
        if not self.config.exporters:
            return
        from flamed.daemon.export import Exporters

        self.exporters = Exporters(
            self.config.exporters, registry=self.metrics.registry, clock=self.clock
        )
        await self.exporters.start()

    async def _stop_exporters(self) -> None:
        if self.exporters is not None:
            await self.exporters.stop()

    async def _apply_exporters(self, new: Config) -> None:
        if self.exporters is None:
            await self._start_exporters()
        else:
            await self.exporters.apply(new.exporters)

    # -- retention -------------------------------------------------------------------------

    async def _pruner(self) -> None:
        while True:
            self.prune()
            await asyncio.sleep(min(self.config.storage.bucket, 60.0))

    def prune(self) -> None:
        """Drop buckets past the retention; roll old ones up (files: write first, then delete)."""
        storage, now = self.config.storage, self.clock()
        for name, window in self.windows.items():
            target = self.targets.get(name)
            dropped = window.prune(now - storage.retention)
            if dropped:
                self._queue_write("delete", name, dropped, target)
                unsaved = self._unsaved.get(name)
                if unsaved is not None:
                    unsaved.difference_update(bucket.key for bucket in dropped)
            for coarse, members in window.rollup(now - storage.rollup_after, storage.rollup):
                self._queue_write("replace", name, [coarse, *members], target)
            if self.disk is not None:  # written a roll-up period ago: on disk by now
                window.evict(self._hot_since(), keep=self._unsaved.get(name, set()))
        for name in [name for name in self.retired if not self.windows[name].buckets]:
            self.retired.discard(name)  # a removed target's history has expired
            del self.windows[name]
            self._unsaved.pop(name, None)

    # -- reload ----------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Ask for a reload (SIGHUP, the file watcher); safe from any thread."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._thread:
            loop.call_soon_threadsafe(self._reload_wanted.set)
        else:
            self._reload_wanted.set()

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            await asyncio.sleep(RELOAD_SETTLE)  # an editor's save is several events
            self._reload_wanted.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Re-read the config file and apply it; a bad one is refused, logged and counted."""
        if self.config_path is None:
            log.info("reload asked, but running on the embedded default: nothing to re-read")
            return False
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except FlamedError as err:
            log.error("config reload refused, keeping the running config: %s", err)
            self.metrics.config_reloads.labels("error").inc()
            return False
        await self.apply(new)
        self.metrics.config_reloads.labels("success").inc()
        return True

    async def apply(self, new: Config) -> None:
        """Swap to ``new``: targets added, removed or changed; the others keep running."""
        async with self._apply_lock:
            new = self._keep_fixed(new)
            old = self.config
            self.config = new
            bucket_changed = old.storage.bucket != new.storage.bucket
            for window in self.windows.values():
                window.max_stacks = new.storage.max_stacks
            wanted = {spec.name: spec for spec in new.targets}
            for name, target in list(self.targets.items()):
                if wanted.get(name) != target.spec or bucket_changed:
                    await self._stop_target(target)
                    del self.targets[name]
                    if name not in wanted:
                        self.retired.add(name)  # its history stays queryable until retention
                        log.info("target %s removed", name)
            for spec in new.targets:
                if spec.name not in self.targets:
                    self.retired.discard(spec.name)
                    await self._add_target(spec)
                    log.info("target %s started", spec.name)
            if old.exporters != new.exporters:
                await self._apply_exporters(new)
            self.prune()

    def _keep_fixed(self, new: Config) -> Config:
        """Settings that need a restart keep their running values (with a warning)."""
        old = self.config
        storage = dataclasses.replace(
            new.storage, state_dir=old.storage.state_dir, inbox=old.storage.inbox
        )
        server = dataclasses.replace(new.server, host=old.server.host, port=old.server.port)
        for what, before, after in (
            ("server.listen", old.server.listen, new.server.listen),
            ("storage.state_dir", old.storage.state_dir, new.storage.state_dir),
            ("storage.inbox", old.storage.inbox, new.storage.inbox),
        ):
            if before != after:
                log.warning("%s changed; it takes effect at the next restart", what)
        return dataclasses.replace(new, storage=storage, server=server)

    # -- reading ---------------------------------------------------------------------------

    def readings(self) -> list[TargetReading]:
        out = []
        for name, target in self.targets.items():
            status = target.status
            window = self.windows.get(name)
            out.append(
                TargetReading(
                    target=name,
                    up=status.state == "running",
                    pids=len(status.pids),
                    stacks=window.stacks() if window is not None else 0,
                    restarts=dict(Counter(status.restarts) + target.restarts),
                    dropped=dict(Counter(status.chunks_dropped) + target.dropped),
                    samples_lost=status.samples_lost,
                    samples_late=status.samples_late,
                )
            )
        return out

    def describe(self, name: str) -> dict[str, Any]:
        """One entry of /api/v1/targets."""
        target = self.targets[name]
        window = self.windows[name]
        status = target.status
        state = status.state if status.state in ("running", "waiting", "error") else "waiting"
        return {
            "name": name,
            "spec": spec_json(target.spec),
            "state": state,
            "last_error": status.last_error,
            "pids": list(status.pids),
            "backend": status.backend,
            "event": status.event,
            "oldest": window.oldest,
            "newest": window.newest,
            "samples_last_minute": window.samples_since(self.clock() - 60.0),
            "restarts": sum((Counter(status.restarts) + target.restarts).values()),
            "samples_lost": status.samples_lost,
            "samples_late": status.samples_late,
        }

    @property
    def loading(self) -> bool:
        """True while bucket files are still being read at start."""
        return bool(self._loading)

    def ready(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting"
        if self._loading:
            return False, "loading windows from disk: " + ", ".join(sorted(self._loading))
        bad = [n for n, t in self.targets.items() if t.status.state not in ("running", "waiting")]
        if bad:
            return False, "not sampling: " + ", ".join(sorted(bad))
        return True, "ready"

    def summary(self) -> str:
        states = Counter(t.status.state for t in self.targets.values())
        parts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        count = len(self.targets)
        return f"{count} target{'' if count == 1 else 's'} ({parts or 'none'})"


class FailedSession:
    """Stands in for a session that could not even be built, to carry its error."""

    def __init__(self, spec: TargetSpec, error: str) -> None:
        self.spec = spec
        self.status = SessionStatus(state="error", last_error=error)

    async def run(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def spec_json(spec: TargetSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.all:
        out["all"] = True
    elif spec.pids:
        out["pids"] = list(spec.pids)
    for key in ("process", "cmdline", "unit"):
        if getattr(spec, key) is not None:
            out[key] = getattr(spec, key)
    out.update(frequency=spec.frequency, call_graph=spec.call_graph, backend=spec.backend)
    return out
