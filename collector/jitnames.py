"""What a perf session does for JIT-compiled code: perf maps read by flamed, JVMs asked.

The perf session folds its stream as it comes; each bucket's collapser names
perf-map frames through ``resolver`` (``flamed.collector.perfmap``), which
reads the target's maps as they grow, while the long-lived perf script never
reads them again; with ``jitdump``, also from the target's jitdump files
(``flamed.collector.jitdump``). ``tick()`` (every tick of the session) drops
the maps of processes gone whose last samples were folded, and, with
``java_perfmap``, asks the target's JVMs for a fresh map when sampling starts
and every few buckets (``flamed.collector.java``), in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from flamed.collapse.perf import MapResolver
from flamed.collector.base import MapStats
from flamed.collector.java import EVERY_BUCKETS, PerfMapWriter
from flamed.collector.jitdump import JitDump
from flamed.collector.perfmap import KEEP_SECONDS, PerfMaps
from flamed.collector.runner import SessionOptions


class JitNames:
    """The perf maps and JVM requests of one session."""

    def __init__(self, options: SessionOptions, name: str) -> None:
        self.options = options
        # A gone process's samples come at most a stall (then perf is restarted) and a
        # grace late: its map is kept until then.
        keep = max(KEEP_SECONDS, options.stall_seconds + options.grace)
        self.maps = (
            PerfMaps(options.proc_root, keep_seconds=keep, name=name) if options.perf_maps else None
        )
        self.dumps = (
            PerfMaps(options.proc_root, format=JitDump(), keep_seconds=keep, name=name)
            if options.jitdump
            else None
        )
        self.java = PerfMapWriter(options.proc_root, name) if options.java_perfmap else None
        self._asked_at = -float("inf")
        self._asking: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, MapStats]:
        """The readers' live counters, by kind of map."""
        kinds = (("perf-map", self.maps), ("jitdump", self.dumps))
        return {kind: reader.stats for kind, reader in kinds if reader is not None}

    @property
    def resolver(self) -> MapResolver | None:
        readers = [reader.lookup for reader in (self.maps, self.dumps) if reader is not None]
        if len(readers) < 2:
            return readers[0] if readers else None
        maps, dumps = readers
        return lambda pid, address: maps(pid, address) or dumps(pid, address)

    def started(self) -> None:
        """A new pipeline samples: JVMs are asked at the next tick."""
        self._asked_at = -float("inf")

    def tick(self, pids: tuple[int, ...]) -> None:
        for reader in (self.maps, self.dumps):
            if reader is not None:
                reader.prune()
        if self.java is None or (self._asking is not None and not self._asking.done()):
            return
        now = time.monotonic()
        if now - self._asked_at >= EVERY_BUCKETS * self.options.bucket_seconds:
            self._asked_at = now
            self._asking = asyncio.create_task(self.java.write(pids))

    async def close(self) -> None:
        """Stop asking: a request under way is cancelled."""
        if self._asking is not None:
            self._asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._asking
            self._asking = None
