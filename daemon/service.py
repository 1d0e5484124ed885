"""The daemon's core: targets and their windows, chunks in, pruning, reloads, queries.

``Service`` owns time (a clock parameter), one ``Window`` per target (and the
windows of targets a reload removed, queryable until their buckets expire),
one ``Supervisor`` per configured target, the bucket writer and the
exporters. Sessions are built by an injected ``SessionFactory`` (the real one
is ``flamed.collector``'s; tests pass a fake that emits chunks). Everything
here runs on the event loop; ``on_chunk`` and ``request_reload`` may be called
from any thread, and a ``Query``'s merge runs in whichever thread asks for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from flamed.collapse.errors import FlamedError
from flamed.collapse.folded import Folded
from flamed.collector.base import Chunk, TargetSpec
from flamed.daemon.config import Config, load_config
from flamed.daemon.export import Exporters
from flamed.daemon.metrics import Metrics, TargetReading
from flamed.daemon.persist import BucketWriter, DiskStore
from flamed.daemon.query import Query, UnknownTarget
from flamed.daemon.store import Bucket, Window, make_bucket, trim_memory
from flamed.daemon.supervisor import SessionFactory, Supervisor
from flamed.daemon.timerange import TimeRange

log = logging.getLogger("flamed.daemon")

WRITES_TIMEOUT = 1.5
"""Seconds the last bucket files get at shutdown; with the samplers' stop, exit within 10 s."""
RELOAD_SETTLE = 0.3
"""Seconds a reload waits for more changes (an editor's save is several events)."""


class Service:
    """Targets, windows and persistence for one config; ``apply`` swaps configs live."""

    def __init__(
        self,
        config: Config,
        *,
        session_factory: SessionFactory,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        config_path: str | None = None,
        persist: bool = True,
        disk: DiskStore | None = None,
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.clock = clock
        self.config_path = config_path
        self.metrics = metrics if metrics is not None else Metrics(process=False)
        self.metrics.add_targets(self.readings)
        if disk is None and persist:
            disk = DiskStore(config.storage.state_dir)
        self.disk = disk
        self.writer = BucketWriter(disk, self.metrics.disk_errors, self._kept, self._backlogged)
        self.exporters = Exporters(config.exporters, registry=self.metrics.registry, clock=clock)
        self.windows: dict[str, Window] = {}
        self.targets: dict[str, Supervisor] = {}
        self.retired: set[str] = set()
        """Targets removed by a reload whose window stays queryable until its buckets expire."""
        self.started = False
        self._loading: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._apply_lock = asyncio.Lock()
        self._reload_wanted = asyncio.Event()

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.writer.start()
        self._tasks = [
            asyncio.create_task(self._pruner(), name="flamed-pruner"),
            asyncio.create_task(self._reloader(), name="flamed-reloader"),
        ]
        for spec in self.config.targets:
            self._add_target(spec)
        await self.exporters.start()
        self.started = True

    async def stop(self) -> None:
        """Stop every session (each flushes its last bucket), then finish the writes."""
        await asyncio.gather(*(target.stop() for target in self.targets.values()))
        await self.writer.stop(WRITES_TIMEOUT)
        if self.disk is not None:
            writer = self.writer
            log.info(
                "stopped: wrote %d buckets to %s, %d pending (not written)",
                writer.written, self.disk.root, writer.pending(),
            )  # fmt: skip
        await self.exporters.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def on_loop(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the event loop's thread: now if called there, else soon."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._thread:
            loop.call_soon_threadsafe(work)
        else:
            work()

    # -- targets and windows ---------------------------------------------------------------

    def _add_target(self, spec: TargetSpec) -> None:
        if spec.name not in self.windows:
            self.windows[spec.name] = self._new_window(spec.name)
            self._loading.add(spec.name)
            self._tasks.append(asyncio.create_task(self._load_window(spec.name)))
        sampler = self.config.sampler(spec.name)
        build = functools.partial(
            self.session_factory,
            spec,
            bucket_seconds=self.config.storage.bucket,
            on_chunk=self.on_chunk,
            **sampler.arguments(),
        )
        target = Supervisor(spec, sampler, build)
        self.targets[spec.name] = target
        target.start()

    def _new_window(self, name: str) -> Window:
        disk = self.disk
        read = (lambda bucket: disk.read(name, bucket)) if disk is not None else None
        return Window(name, self.config.storage.max_stacks, read)

    def _hot_since(self) -> float:
        """Buckets that ended before this keep their stacks on disk only."""
        return self.clock() - self.config.storage.memory

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

    def _kept(self, name: str) -> Sequence[Bucket]:
        window = self.windows.get(name)
        return window.buckets if window is not None else ()

    def _backlogged(self, name: str) -> None:
        if name in self.targets:
            self.targets[name].dropped["disk_backlog"] += 1

    # -- chunks in -------------------------------------------------------------------------

    def on_chunk(self, chunk: Chunk) -> None:
        """The sessions' sink; safe to call from another thread."""
        self.on_loop(lambda: self._take_chunk(chunk))

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
        self.writer.write(chunk.target, [window.add(bucket)])
        self.exporters.submit(chunk.target, bucket, target.spec.frequency)

    def ingest(self, name: str, folded: Folded, fmt: str, nbytes: int, cpu: float) -> None:
        """Fold a profile from outside (the inbox) into the current bucket of ``name``."""
        size = self.config.storage.bucket
        start = math.floor(self.clock() / size) * size
        samples = int(folded.total())
        self._take_chunk(Chunk(name, start, start + size, folded, samples, nbytes, cpu, fmt))

    # -- retention -------------------------------------------------------------------------

    async def _pruner(self) -> None:
        while True:
            self.prune()
            await asyncio.sleep(min(self.config.storage.bucket, 60.0))

    def prune(self) -> None:
        """Drop buckets past the retention; roll old ones up (files: write first, then delete)."""
        storage, now = self.config.storage, self.clock()
        for name, window in self.windows.items():
            dropped = window.prune(now - storage.retention)
            if dropped:
                self.writer.delete(name, dropped)
            for coarse, members in window.rollup(now - storage.rollup_after, storage.rollup):
                self.writer.replace(name, coarse, members)
            if self.disk is not None:  # written a roll-up period ago: on disk by now
                window.evict(self._hot_since(), keep=self.writer.unsaved(name))
        for name in [name for name in self.retired if not self.windows[name].buckets]:
            self.retired.discard(name)  # a removed target's history has expired
            del self.windows[name]
            self.writer.forget(name)
        trim_memory()  # the buckets' freed stacks and the collapsers' caches go back to the system

    # -- reload ----------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Ask for a reload (SIGHUP, the file watcher); safe from any thread."""
        self.on_loop(self._reload_wanted.set)

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            await asyncio.sleep(RELOAD_SETTLE)
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
            old, self.config = self.config, new
            bucket_changed = old.storage.bucket != new.storage.bucket
            for window in self.windows.values():
                window.max_stacks = new.storage.max_stacks
            for name, target in list(self.targets.items()):
                wanted = (new.target(name), new.sampler(name))
                if wanted != (target.spec, target.sampler) or bucket_changed:
                    await target.stop()
                    del self.targets[name]
                    if wanted[0] is None:
                        self.retired.add(name)  # its history stays queryable until retention
                        log.info("target %s removed", name)
            for spec in new.targets:
                if spec.name not in self.targets:
                    self.retired.discard(spec.name)
                    self._add_target(spec)
                    log.info("target %s started", spec.name)
            if old.exporters != new.exporters:
                await self.exporters.apply(new.exporters)
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

    def now(self) -> float:
        return self.clock()

    def query(self, target: str, span: TimeRange) -> Query:
        """``target``'s buckets over ``span`` (a removed target's too, until they expire)."""
        window = self.windows.get(target)
        if window is None:
            raise UnknownTarget(f"unknown target {target!r} (see /api/v1/targets)")
        running = self.targets.get(target)
        frequency = running.spec.frequency if running is not None else TargetSpec.frequency
        return Query(target, span, window, frequency, self.on_loop)

    def first_target(self) -> str:
        """The target the quick endpoints (``/flamegraph.svg``, ``/folded.txt``) show."""
        if not self.config.targets:
            raise UnknownTarget("no targets configured")
        return self.config.targets[0].name

    def describe(self, name: str) -> dict[str, Any]:
        """One entry of /api/v1/targets."""
        window = self.windows[name]
        return {
            **self.targets[name].describe(),
            "oldest": window.oldest,
            "newest": window.newest,
            "samples_last_minute": window.samples_since(self.clock() - 60.0),
        }

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self.targets]

    def readings(self) -> list[TargetReading]:
        windows = self.windows
        return [
            target.reading(windows[name].stacks() if name in windows else 0)
            for name, target in self.targets.items()
        ]

    @property
    def loading(self) -> bool:
        """True while bucket files are still being read at start."""
        return bool(self._loading)

    def ready(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting"
        if self._loading:
            return False, "loading windows from disk: " + ", ".join(sorted(self._loading))
        states = {name: target.status.state for name, target in self.targets.items()}
        bad = [name for name, state in states.items() if state not in ("running", "waiting")]
        if bad:
            return False, "not sampling: " + ", ".join(sorted(bad))
        return True, "ready"

    def describe_targets(self) -> str:
        """``system (the whole machine), web (process name '^nginx$')``, for the log."""
        return ", ".join(f"{spec.name} ({spec.describe()})" for spec in self.config.targets)

    def summary(self) -> str:
        states = Counter(target.status.state for target in self.targets.values())
        parts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        count = len(self.targets)
        return f"{count} target{'' if count == 1 else 's'} ({parts or 'none'})"
