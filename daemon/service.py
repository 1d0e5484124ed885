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
from flamed.collector.base import PROFILE_TYPES, Chunk, TargetSpec
from flamed.daemon.config import Config, SamplerConfig, load_config
from flamed.daemon.export import Exporters
from flamed.daemon.metrics import Metrics, TargetReading
from flamed.daemon.persist import BucketWriter, DiskStore
from flamed.daemon.query import HotColdQuery, NoSuchProfile, ProfileQuery, Query, UnknownTarget
from flamed.daemon.store import Bucket, Window, make_bucket, trim_memory
from flamed.daemon.supervisor import SessionFactory, Supervisor
from flamed.daemon.timerange import TimeRange

log = logging.getLogger("flamed.daemon")

WRITES_TIMEOUT = 1.5
"""Seconds the last bucket files get at shutdown; with the samplers' stop, exit within 10 s."""
RELOAD_SETTLE = 0.3
"""Seconds a reload waits for more changes (an editor's save is several events)."""


def window_name(target: str, profile: str) -> str:
    """The name of a target's window of one profile type, and of its folder of bucket files:
    the target's own name for ``cpu`` (where its files always were), ``target/offcpu``."""
    return target if profile == "cpu" else f"{target}/{profile}"


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
        """By ``window_name(target, profile)``: the target's name for its CPU profile."""
        self.targets: dict[str, Supervisor] = {}
        self.offcpu: dict[str, Supervisor] = {}
        """The off-CPU samplers of the targets that ask for one (``offcpu = true``)."""
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
        running = [*self.targets.values(), *self.offcpu.values()]
        await asyncio.gather(*(target.stop() for target in running))
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
        sampler = self.config.sampler(spec.name)
        for profile in PROFILE_TYPES:
            if profile == "cpu" or sampler.offcpu or self._on_disk(spec.name, profile):
                self._open_window(spec.name, profile)
        self.targets[spec.name] = self._supervise(spec, sampler, sampler.arguments())
        if sampler.offcpu:
            self.offcpu[spec.name] = self._supervise(spec, sampler, sampler.offcpu_arguments())

    def _supervise(
        self, spec: TargetSpec, sampler: SamplerConfig, args: dict[str, Any]
    ) -> Supervisor:
        build = functools.partial(
            self.session_factory,
            spec,
            bucket_seconds=self.config.storage.bucket,
            on_chunk=self.on_chunk,
            **args,
        )
        target = Supervisor(spec, sampler, build)
        target.start()
        return target

    def _on_disk(self, target: str, profile: str) -> bool:
        """Does the state directory hold buckets of this profile of the target?"""
        if self.disk is None:
            return False
        return (self.disk.root / window_name(target, profile)).is_dir()

    def _open_window(self, target: str, profile: str) -> Window:
        """The target's window of this profile type; a new one loads its files first."""
        name = window_name(target, profile)
        window = self.windows.get(name)
        if window is None:
            window = self.windows[name] = self._new_window(name)
            if self.disk is not None:
                self._loading.add(name)
                self._tasks.append(asyncio.create_task(self._load_window(name)))
        return window

    def _new_window(self, name: str) -> Window:
        disk = self.disk
        read = (lambda bucket: disk.read(name, bucket)) if disk is not None else None
        return Window(name, self.config.storage.max_stacks, read)

    def profiles(self, target: str) -> list[str]:
        """The profile types the target has (running, or still held)."""
        return [p for p in PROFILE_TYPES if window_name(target, p) in self.windows]

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
        target = name.partition("/")[0]
        if target in self.targets:
            self.targets[target].dropped["disk_backlog"] += 1

    # -- chunks in -------------------------------------------------------------------------

    def on_chunk(self, chunk: Chunk) -> None:
        """The sessions' sink; safe to call from another thread."""
        self.on_loop(lambda: self._take_chunk(chunk))

    def _take_chunk(self, chunk: Chunk) -> None:
        target = self.targets.get(chunk.target)
        if target is None or chunk.profile not in PROFILE_TYPES:
            log.debug("chunk for unknown target %s dropped", chunk.target)
            return
        window = self._open_window(chunk.target, chunk.profile)
        if chunk.end <= self.clock() - self.config.storage.retention:
            target.dropped["stale"] += 1
            return
        self.metrics.chunk_folded(
            chunk.target,
            chunk.format,
            chunk.bytes_folded,
            chunk.samples,
            chunk.cpu_seconds,
            chunk.profile,
        )
        bucket = make_bucket(chunk.start, chunk.end, chunk.folded, window.max_stacks, chunk.samples)
        self.writer.write(window.name, [window.add(bucket)])
        self.exporters.submit(chunk.target, bucket, target.spec.frequency, chunk.profile)

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
        for target in [target for target in self.retired if self._expired(target)]:
            self.retired.discard(target)  # a removed target's history has expired
            for profile in self.profiles(target):
                name = window_name(target, profile)
                del self.windows[name]
                self.writer.forget(name)
        trim_memory()  # the buckets' freed stacks and the collapsers' caches go back to the system

    def _expired(self, target: str) -> bool:
        return not any(self.windows[window_name(target, p)].buckets for p in self.profiles(target))

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
                    if name in self.offcpu:
                        await self.offcpu.pop(name).stop()
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

    def query(self, target: str, span: TimeRange, profile: str = "cpu") -> ProfileQuery:
        """``target``'s buckets of one profile type (or ``hotcold``: both) over ``span`` (a
        removed target's too, until they expire)."""
        if profile == "hotcold":
            return HotColdQuery(
                self._query(target, span, "cpu"), self._query(target, span, "offcpu")
            )
        return self._query(target, span, profile)

    def _query(self, target: str, span: TimeRange, profile: str) -> Query:
        window = self.windows.get(window_name(target, profile))
        if window is None and window_name(target, "cpu") in self.windows:
            has = ", ".join(self.profiles(target))
            raise NoSuchProfile(f"target {target!r} has no {profile} profile (it has: {has})")
        if window is None:
            raise UnknownTarget(f"unknown target {target!r} (see /api/v1/targets)")
        running = self.targets.get(target)
        frequency = running.spec.frequency if running is not None else TargetSpec.frequency
        return Query(target, span, window, frequency, self.on_loop, profile)

    def first_target(self) -> str:
        """The target the quick endpoints (``/flamegraph.svg``, ``/folded.txt``) show."""
        if not self.config.targets:
            raise UnknownTarget("no targets configured")
        return self.config.targets[0].name

    def describe(self, name: str) -> dict[str, Any]:
        """One entry of /api/v1/targets."""
        window = self.windows[name]
        out = {
            **self.targets[name].describe(),
            "oldest": window.oldest,
            "newest": window.newest,
            "samples_last_minute": window.samples_since(self.clock() - 60.0),
            "types": self.profiles(name),
        }
        offcpu = self.offcpu.get(name)
        if offcpu is not None:
            out["offcpu"] = offcpu.describe_sampler()
        return out

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self.targets]

    def readings(self) -> list[TargetReading]:
        windows = self.windows
        readings = []
        for name, target in self.targets.items():
            stacks = sum(windows[window_name(name, p)].stacks() for p in self.profiles(name))
            offcpu = self.offcpu.get(name)
            readings.append(target.reading(stacks, offcpu.status if offcpu else None))
        return readings

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
