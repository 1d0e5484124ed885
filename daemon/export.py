"""Push each completed bucket to Grafana Pyroscope or Parca, as pprof.

One ``Exporter`` per ``[[exporters]]`` table. The service hands it every
completed bucket of every target it wants, CPU and (where the target records
it) off-CPU, through ``submit``, which never
blocks and never fails: the bucket goes on a bounded queue (when the queue is
full the oldest waiting bucket is dropped and counted, so a dead receiver costs
bounded memory). One worker task per exporter takes the buckets in order,
encodes each in a worker thread (``flamed.render.pprof``, reduced to the
receiver's limits with an ``[other]`` stack), and posts it:

* ``kind = "pyroscope"``: Connect JSON, ``POST {url}/push.v1.PusherService/Push``
  with ``Connect-Protocol-Version: 1``, optional HTTP basic auth (Grafana Cloud)
  and ``X-Scope-OrgID``;
* ``kind = "parca"``: ``POST {url}/api/profiles/writeraw`` (the HTTP gateway
  of Parca's ProfileStoreService.WriteRaw), optional bearer token.

A 429, a 5xx, a timeout or a connection error is retried with capped, jittered
exponential backoff (``Retry-After`` honoured up to the cap) while later buckets
wait, so they still arrive in order. Any other answer (400, 401, 413, 422, …)
is logged once per status and the bucket dropped. A bucket older than the
receiver accepts (Pyroscope refuses profiles over an hour old) is dropped and
counted instead of being retried forever.

Metrics (``flamed.daemon.metrics.ExportMetrics``, on the registry given):
``flamed_export_pushes_total{exporter,result}`` (one per HTTP attempt:
success, retry, rejected), ``flamed_export_queue_depth{exporter}`` and
``flamed_export_dropped_total{exporter,reason}`` (queue_full, too_old,
rejected, shutdown). The ``[[exporters]]`` tables are read with the rest of
the config (``flamed.daemon.exporter_config``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flamed.daemon.exporter_config import ExporterConfig, ExportKind
from flamed.daemon.metrics import ExportMetrics
from flamed.render.pprof import (
    PYROSCOPE_MAX_BYTES,
    PYROSCOPE_MAX_SAMPLES,
    PprofOptions,
    encode_within,
)

if TYPE_CHECKING:
    import aiohttp
    from prometheus_client import CollectorRegistry

    from flamed.daemon.store import Bucket

log = logging.getLogger("flamed.daemon.export")

PROFILE_NAMES: dict[str, str] = {"cpu": "process_cpu", "offcpu": "off_cpu"}
"""The ``__name__`` label of each profile type: the profile's name in Pyroscope and Parca
(the first part of Pyroscope's ``name:sample_type:unit:period_type:unit`` type ids)."""
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
STOP_TIMEOUT = 2.0
"""Seconds a stopping daemon keeps pushing what is queued (the daemon's stop is bounded)."""
ERROR_BODY_BYTES = 1024

Sleep = Callable[[float], Awaitable[None]]


# -- the receivers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """What one kind of receiver expects (how old a profile may be is the config's)."""

    path: str
    max_samples: int = PYROSCOPE_MAX_SAMPLES
    max_bytes: int = PYROSCOPE_MAX_BYTES


RECEIVERS: dict[ExportKind, Receiver] = {
    "pyroscope": Receiver("/push.v1.PusherService/Push"),
    "parca": Receiver("/api/profiles/writeraw"),
}


def endpoint(config: ExporterConfig) -> str:
    return config.url.rstrip("/") + RECEIVERS[config.kind].path


def request_headers(config: ExporterConfig) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "flamed"}
    if config.kind == "pyroscope":
        headers["Connect-Protocol-Version"] = "1"
    if config.user is not None and config.password is not None:
        pair = f"{config.user}:{config.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    elif config.token is not None:
        headers["Authorization"] = f"Bearer {config.token}"
    if config.tenant:
        headers["X-Scope-OrgID"] = config.tenant
    return headers


def push_labels(config: ExporterConfig, target: str, profile: str = "cpu") -> list[tuple[str, str]]:
    """``__name__`` (the profile's), ``service_name`` (the target unless set), ``target``, the
    extra labels."""
    labels = {"__name__": PROFILE_NAMES[profile], "service_name": target, "target": target}
    labels.update(config.labels)
    return sorted((name, value) for name, value in labels.items() if value)


def request_body(kind: ExportKind, labels: Sequence[tuple[str, str]], profile: bytes) -> bytes:
    """The JSON body of one push: one series, one sample."""
    pairs = [{"name": name, "value": value} for name, value in labels]
    raw = base64.b64encode(profile).decode("ascii")
    if kind == "pyroscope":
        sample: dict[str, Any] = {"ID": str(uuid.uuid4()), "rawProfile": raw}
        series: dict[str, Any] = {"labels": pairs, "samples": [sample]}
    else:
        series = {"labels": {"labels": pairs}, "samples": [{"raw_profile": raw}]}
    return json.dumps({"series": [series]}, ensure_ascii=False).encode("utf-8")


# -- pushing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A bucket waiting to be pushed."""

    target: str
    bucket: Bucket
    frequency: float
    profile: str = "cpu"
    """``cpu`` (counts are samples) or ``offcpu`` (counts are microseconds off CPU)."""


@dataclass(frozen=True)
class Answer:
    """What one HTTP attempt came to."""

    result: Literal["success", "retry", "rejected"]
    status: int | None
    detail: str = ""
    retry_after: float | None = None


def classify(status: int, detail: str, retry_after: str | None) -> Answer:
    if 200 <= status < 300:
        return Answer("success", status)
    if status == 429 or status >= 500:
        return Answer("retry", status, detail, parse_retry_after(retry_after))
    return Answer("rejected", status, detail)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


def backoff(attempt: int, rand: float, retry_after: float | None = None) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, capped."""
    if retry_after is not None:
        return min(BACKOFF_CAP, retry_after)
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 30))
    return ceiling / 2 + ceiling / 2 * rand


class Exporter:
    """One receiver: a bounded queue and the worker that drains it in order."""

    def __init__(
        self,
        config: ExporterConfig,
        metrics: ExportMetrics,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.session = session
        self.clock, self.sleep, self.rand = clock, sleep, rand
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(config.queue)
        self.task: asyncio.Task[None] | None = None
        self._headers = request_headers(config)
        self._endpoint = endpoint(config)
        self._logged: set[int | None] = set()
        self._failing = False
        self._warned_full = False
        metrics.add(config.name)

    @property
    def name(self) -> str:
        return self.config.name

    # -- the producer's side (never blocks) --

    def submit(self, target: str, bucket: Bucket, frequency: float, profile: str = "cpu") -> None:
        if not bucket.stacks or not self.config.wants(target, profile):
            return  # an idle bucket says nothing a receiver needs
        if self.queue.full():
            self.queue.get_nowait()
            self.queue.task_done()
            self._drop("queue_full")
            if not self._warned_full:
                self._warned_full = True
                log.warning("exporter %s: queue full; dropping the oldest buckets", self.name)
        self.queue.put_nowait(Pending(target, bucket, frequency, profile))
        self._depth()

    # -- the worker --

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"flamed-export-{self.name}")

    async def run(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await self.deliver(item)
            except asyncio.CancelledError:
                self._drop("shutdown")  # stopped while this one was in flight
                raise
            except Exception:  # a bug here must not stop the exporter
                log.exception("exporter %s: push failed", self.name)
            finally:
                self.queue.task_done()
                self._depth()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Push what is queued for up to ``timeout`` seconds, then drop the rest."""
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout)
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
            self._drop("shutdown")
        self._depth()

    async def deliver(self, item: Pending) -> None:
        """Push one bucket: retried while retrying helps, dropped when too old."""
        if self._too_old(item):
            return
        body = await asyncio.to_thread(self.encode, item)
        attempt = 0
        while True:
            answer = await self.post(body)
            self.metrics.pushes.labels(self.name, answer.result).inc()
            if answer.result == "success":
                self._recovered()
                return
            if answer.result == "rejected":
                self._rejected(item, answer)
                return
            self._retrying(answer)
            await self.sleep(backoff(attempt, self.rand(), answer.retry_after))
            attempt += 1
            if self._too_old(item):
                return

    def encode(self, item: Pending) -> bytes:
        """The request body (runs in a worker thread)."""
        bucket, receiver = item.bucket, RECEIVERS[self.config.kind]
        options = PprofOptions(
            frequency=item.frequency,
            start_ns=round(bucket.start * 1e9),
            duration_ns=round((bucket.end - bucket.start) * 1e9),
            kind=item.profile,
        )
        fitted = encode_within(
            bucket.folded(),
            options,
            max_samples=receiver.max_samples,
            max_bytes=receiver.max_bytes,
        )
        if fitted.folded_into_other:
            log.info(
                "exporter %s: target %s: %d stacks summed into [other] to fit %s's limits",
                self.name, item.target, fitted.folded_into_other, self.config.kind,
            )  # fmt: skip
        labels = push_labels(self.config, item.target, item.profile)
        return request_body(self.config.kind, labels, fitted.data)

    async def post(self, body: bytes) -> Answer:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self.session.post(
                self._endpoint,
                data=body,
                headers=self._headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                detail = await response.content.read(ERROR_BODY_BYTES)
                text = detail.decode("utf-8", "replace").strip()
                return classify(response.status, text, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as err:
            return Answer("retry", None, f"{type(err).__name__}: {err}".rstrip(": "))

    # -- bookkeeping --

    def _too_old(self, item: Pending) -> bool:
        if self.clock() - item.bucket.start <= self.config.max_age:
            return False
        self._drop("too_old")
        log.info(
            "exporter %s: target %s: a bucket is older than %gs; dropped",
            self.name, item.target, self.config.max_age,
        )  # fmt: skip
        return True

    def _rejected(self, item: Pending, answer: Answer) -> None:
        self._drop("rejected")
        if answer.status in self._logged:
            return
        self._logged.add(answer.status)
        log.error(
            "exporter %s: %s answered %s for target %s; dropping such buckets "
            "(logged once per status): %s",
            self.name, self._endpoint, answer.status, item.target, answer.detail[:300],
        )  # fmt: skip

    def _retrying(self, answer: Answer) -> None:
        if self._failing:
            return
        self._failing = True
        what = answer.status if answer.status is not None else "no answer"
        log.warning(
            "exporter %s: %s: %s %s; retrying with backoff",
            self.name, self._endpoint, what, answer.detail[:300],
        )  # fmt: skip

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("exporter %s: pushes succeed again", self.name)

    def _drop(self, reason: str) -> None:
        self.metrics.dropped.labels(self.name, reason).inc()

    def _depth(self) -> None:
        self.metrics.queue_depth.labels(self.name).set(self.queue.qsize())


class Exporters:
    """Every configured exporter of a daemon; ``submit`` fans a bucket out without blocking."""

    def __init__(
        self,
        configs: Sequence[ExporterConfig],
        *,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.configs = tuple(configs)
        self.registry = registry
        self.clock, self.sleep, self.rand = clock, sleep, rand
        self.metrics: ExportMetrics | None = None
        self.session: aiohttp.ClientSession | None = None
        self.exporters: dict[str, Exporter] = {}

    async def start(self) -> None:
        for config in self.configs:
            self._start_one(config)

    def submit(self, target: str, bucket: Bucket, frequency: float, profile: str = "cpu") -> None:
        for exporter in self.exporters.values():
            exporter.submit(target, bucket, frequency, profile)

    async def apply(self, configs: Sequence[ExporterConfig]) -> None:
        """A reload: exporters removed or changed are stopped, new ones started."""
        wanted = {config.name: config for config in configs}
        for name, exporter in list(self.exporters.items()):
            if wanted.get(name) != exporter.config:
                await exporter.stop()
                del self.exporters[name]
                if name not in wanted and self.metrics is not None:
                    self.metrics.remove(name)
        self.configs = tuple(configs)
        for config in self.configs:
            if config.name not in self.exporters:
                self._start_one(config)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        await asyncio.gather(*(e.stop(timeout) for e in self.exporters.values()))
        self.exporters = {}
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _start_one(self, config: ExporterConfig) -> None:
        if self.metrics is None:
            self.metrics = ExportMetrics(self.registry)
        if self.session is None:
            import aiohttp

            self.session = aiohttp.ClientSession(trust_env=True)
        exporter = Exporter(
            config, self.metrics, self.session, clock=self.clock, sleep=self.sleep, rand=self.rand
        )
        exporter.start()
        self.exporters[config.name] = exporter
        log.info("exporter %s: pushing to %s (%s)", config.name, endpoint(config), config.kind)
