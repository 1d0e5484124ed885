"""One target's sampler, from its spec to its end: build it, run it, stop it, report it.

The restart policy is the collector's: a session's ``run()`` restarts perf or
dtrace itself, with backoff, and counts why (``SamplingSession``). The
supervisor never restarts a session. A spec that cannot be built (a bad regular
expression, a target the backend cannot sample: a ``UsageError``), or a
session whose ``run()`` ends or fails by itself, leaves the target in state
``error`` with its one-line message until a reload changes the target.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from flamed.collapse.errors import FlamedError
from flamed.collector.base import ChunkSink, MapStats, Session, SessionStatus, TargetSpec
from flamed.daemon.config import SamplerConfig
from flamed.daemon.metrics import TargetReading

log = logging.getLogger("flamed.daemon.supervisor")

SESSION_STOP = 5.0
"""Seconds the collector gives perf or dtrace to write its last data (its own limit)."""
STOP_TIMEOUT = 6.5
"""Seconds a sampler gets to stop (SESSION_STOP comes first)."""
TASK_STOP = 2.0
"""Seconds its task then gets to end before it is cancelled."""
STATES = ("running", "waiting", "error")
"""The states the API shows (``starting`` and ``stopped`` show as ``waiting``)."""


class SessionFactory(Protocol):
    """Builds a session for one target; ``flamed.collector.create_session`` is one.

    ``sampler`` holds what ``SamplerConfig.arguments()`` gives (``perf_path``,
    ``event``, ``mmap_pages``: only those the config sets).
    """

    def __call__(
        self,
        spec: TargetSpec,
        *,
        bucket_seconds: float,
        on_chunk: ChunkSink,
        **sampler: Any,
    ) -> Session: ...


def default_factory() -> SessionFactory:
    """flamed.collector's sessions, told to stop within the daemon's shutdown budget."""
    from flamed.collector import create_session

    return functools.partial(create_session, stop_timeout=SESSION_STOP)


class Supervisor:
    """A configured target at run time: its spec, its session, and what went wrong."""

    def __init__(
        self, spec: TargetSpec, sampler: SamplerConfig, build: Callable[[], Session]
    ) -> None:
        self.spec = spec
        self.sampler = sampler
        self.build = build
        self.session: Session | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False
        self.dropped: Counter[str] = Counter()
        """Chunks the daemon dropped (``stale``, ``disk_backlog``); the session counts its own."""
        self._failure: SessionStatus | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"flamed-{self.name}")

    async def stop(self) -> None:
        """Ask the session to stop (bounded), then end the task (cancelled past a bound)."""
        self.stopping = True
        if self.session is not None:
            try:
                await asyncio.wait_for(self.session.stop(), STOP_TIMEOUT)
            except (TimeoutError, FlamedError, OSError) as err:
                reason = str(err) or "timed out"
                log.warning("target %s: stopping the sampler: %s", self.name, reason)
        if self.task is not None:
            done, _ = await asyncio.wait([self.task], timeout=TASK_STOP)
            if not done:
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            self.session = self.build()
        except Exception as err:  # a user error (UsageError), or a spec no session takes
            self._fail(err)
            return
        try:
            await self.session.run()
        except Exception as err:  # the collector lets nothing out; a stand-in may
            self._fail(err)
            return
        if not self.stopping:
            self._fail(None)

    def _fail(self, err: Exception | None) -> None:
        expected = err is None or isinstance(err, FlamedError)
        if err is None:
            message = "the sampler ended by itself (see the log)"
        else:
            message = str(err) if expected else f"{type(err).__name__}: {err}"
        log.error(
            "target %s: %s; not restarted until the config changes",
            self.name, message, exc_info=None if expected else err,
        )  # fmt: skip
        status = self.session.status if self.session is not None else SessionStatus()
        status.state = "error"
        status.error(message)
        self._failure = status

    @property
    def status(self) -> SessionStatus:
        if self._failure is not None:
            return self._failure
        return self.session.status if self.session is not None else SessionStatus()

    @property
    def state(self) -> str:
        """What the API shows: running, waiting or error."""
        state = self.status.state
        return state if state in STATES else "waiting"

    def describe_sampler(self) -> dict[str, Any]:
        """An extra sampler's part of its target's entry (``offcpu``): how it runs."""
        status = self.status
        return {
            "state": self.state,
            "last_error": status.last_error,
            "last_error_time": status.last_error_time,
            "last_error_past": status.last_error_past,
            "backend": status.backend,
            "event": status.event,
            "restarts": sum(status.restarts.values()),
        }

    def describe(self) -> dict[str, Any]:
        """Its part of ``/api/v1/targets`` (the window adds the times and samples)."""
        status = self.status
        return {
            "name": self.name,
            "spec": spec_json(self.spec),
            "state": self.state,
            "last_error": status.last_error,
            "last_error_time": status.last_error_time,
            "last_error_past": status.last_error_past,
            "pids": list(status.pids),
            "backend": status.backend,
            "event": status.event,
            "restarts": sum(status.restarts.values()),
            "samples_lost": status.samples_lost,
            "samples_late": status.samples_late,
        }

    def reading(self, stacks: int, offcpu: SessionStatus | None = None) -> TargetReading:
        """What the metrics report; ``offcpu`` is the target's off-CPU sampler's status."""
        status = self.status
        return TargetReading(
            offcpu_up=None if offcpu is None else offcpu.state == "running",
            target=self.name,
            up=status.state == "running",
            pids=len(status.pids),
            stacks=stacks,
            restarts=dict(status.restarts),
            dropped=dict(Counter(status.chunks_dropped) + self.dropped),
            samples_lost=status.samples_lost,
            samples_late=status.samples_late,
            records_fixed=dict(status.records_fixed),
            jit_maps={kind: snapshot(stats) for kind, stats in status.jit_maps.items()},
        )


def snapshot(stats: MapStats) -> MapStats:
    """A copy the session no longer changes."""
    return dataclasses.replace(stats, refused=dict(stats.refused))


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
