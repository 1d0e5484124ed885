"""Push each completed bucket to Grafana Pyroscope or Parca, as pprof.

One ``Exporter`` per ``[[exporters]]`` table. The service hands it every
completed bucket of every target it wants through ``submit``, which never
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

Metrics, on the registry given: ``flamed_export_pushes_total{exporter,result}``
(one per HTTP attempt: success, retry, rejected),
``flamed_export_queue_depth{exporter}`` and
``flamed_export_dropped_total{exporter,reason}`` (queue_full, too_old, rejected,
shutdown).

``parse_exporters`` reads the ``[[exporters]]`` tables for the daemon's config;
``pprof_for`` is the encoding ``GET /api/v1/pprof`` serves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from flamed.collapse.errors import ConfigError
from flamed.collapse.folded import Folded
from flamed.render.pprof import (
    PYROSCOPE_MAX_BYTES,
    PYROSCOPE_MAX_SAMPLES,
    PprofOptions,
    encode_pprof,
    encode_within,
)

if TYPE_CHECKING:
    import aiohttp
    from prometheus_client import CollectorRegistry

    from flamed.daemon.store import Bucket

log = logging.getLogger("flamed.daemon.export")

Kind = Literal["pyroscope", "parca"]
KINDS: tuple[Kind, ...] = ("pyroscope", "parca")
PROFILE_NAME = "process_cpu"
RESULTS = ("success", "retry", "rejected")
DROP_REASONS = ("queue_full", "too_old", "rejected", "shutdown")
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
STOP_TIMEOUT = 2.0
"""Seconds a stopping daemon keeps pushing what is queued (the daemon's stop is bounded)."""
ERROR_BODY_BYTES = 1024

Sleep = Callable[[float], Awaitable[None]]
Path_ = tuple[str | int, ...]
Fail = Callable[[Path_, str], ConfigError]


# -- the receivers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """What one kind of receiver expects."""

    path: str
    max_age: float
    """Default for how old a bucket may be when it is sent (seconds)."""
    max_age_limit: float | None
    """The receiver refuses anything older; ``max_age`` may not exceed it."""
    max_samples: int = PYROSCOPE_MAX_SAMPLES
    max_bytes: int = PYROSCOPE_MAX_BYTES


RECEIVERS: dict[Kind, Receiver] = {
    # Pyroscope's reject_older_than is 1h; 5 minutes are left for clock skew and transit.
    "pyroscope": Receiver("/push.v1.PusherService/Push", 3300.0, 3600.0),
    "parca": Receiver("/api/profiles/writeraw", 3600.0, None),
}


def request_body(kind: Kind, labels: Sequence[tuple[str, str]], profile: bytes) -> bytes:
    """The JSON body of one push: one series, one sample."""
    pairs = [{"name": name, "value": value} for name, value in labels]
    raw = base64.b64encode(profile).decode("ascii")
    if kind == "pyroscope":
        sample: dict[str, Any] = {"ID": str(uuid.uuid4()), "rawProfile": raw}
        series: dict[str, Any] = {"labels": pairs, "samples": [sample]}
    else:
        series = {"labels": {"labels": pairs}, "samples": [{"raw_profile": raw}]}
    return json.dumps({"series": [series]}, ensure_ascii=False).encode("utf-8")


# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExporterConfig:
    """One ``[[exporters]]`` table, validated, with its credentials read."""

    name: str
    kind: Kind
    url: str
    labels: tuple[tuple[str, str], ...] = ()
    """Extra labels on every push (``hostname`` unless set to ``""``)."""
    targets: tuple[str, ...] = ()
    """The targets pushed; empty means all."""
    user: str | None = None
    password_file: str | None = None
    password: str | None = field(default=None, repr=False)
    token_file: str | None = None
    token: str | None = field(default=None, repr=False)
    tenant: str | None = None
    """Sent as ``X-Scope-OrgID`` (multi-tenant Pyroscope)."""
    queue: int = 64
    """Buckets waiting at most; beyond it the oldest waiting one is dropped."""
    timeout: float = 30.0
    """Seconds for one HTTP attempt."""
    max_age: float = 3300.0
    """Buckets older than this when their turn comes are dropped, not sent."""

    @property
    def receiver(self) -> Receiver:
        return RECEIVERS[self.kind]

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + self.receiver.path

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "flamed"}
        if self.kind == "pyroscope":
            headers["Connect-Protocol-Version"] = "1"
        if self.user is not None and self.password is not None:
            pair = f"{self.user}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.tenant:
            headers["X-Scope-OrgID"] = self.tenant
        return headers

    def wants(self, target: str) -> bool:
        return not self.targets or target in self.targets

    def push_labels(self, target: str) -> list[tuple[str, str]]:
        """``__name__``, ``service_name`` (the target unless set), ``target``, the extra labels."""
        labels = {"__name__": PROFILE_NAME, "service_name": target, "target": target}
        labels.update(self.labels)
        return sorted((name, value) for name, value in labels.items() if value)


EXPORTER_KEYS = (
    "name", "kind", "url", "labels", "targets", "user", "password_file", "token_file",
    "tenant", "queue", "timeout", "max_age",
)  # fmt: skip
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def parse_exporters(
    raw: object,
    source: str,
    *,
    fail: Fail | None = None,
    hostname: Callable[[], str] = socket.gethostname,
    known_targets: Collection[str] | None = None,
) -> tuple[ExporterConfig, ...]:
    """The ``[[exporters]]`` array of a config file (None: there is none).

    ``fail(path, reason)`` makes the ConfigError (the daemon's config reader
    passes its own, which adds the line number); by default the message is
    ``SOURCE: exporters[0].url: REASON``.
    """
    fail = fail if fail is not None else default_fail(source)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise fail(("exporters",), "expected [[exporters]] tables")
    configs: list[ExporterConfig] = []
    for index, table in enumerate(raw):
        path: Path_ = ("exporters", index)
        if not isinstance(table, dict):
            raise fail(path, "expected a table")
        config = _ExporterReader(table, path, fail, hostname(), known_targets).read()
        if any(other.name == config.name for other in configs):
            raise fail((*path, "name"), f"duplicate exporter name {config.name!r}; set `name`")
        configs.append(config)
    return tuple(configs)


def default_fail(source: str) -> Fail:
    def fail(path: Path_, reason: str) -> ConfigError:
        return ConfigError(f"{source}: {dotted(path)}: {reason}")

    return fail


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _ExporterReader:
    """Reads one table; every refusal names its key."""

    def __init__(
        self,
        table: Mapping[str, Any],
        path: Path_,
        fail: Fail,
        hostname: str,
        known_targets: Collection[str] | None,
    ) -> None:
        self.table, self.path, self.fail = table, path, fail
        self.hostname, self.known_targets = hostname, known_targets

    def error(self, key: str, reason: str) -> ConfigError:
        return self.fail((*self.path, key), reason)

    def get(self, key: str, kind: type, what: str) -> Any:
        value = self.table.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise self.error(key, f"expected {what}")
        return value

    def read(self) -> ExporterConfig:
        for key in self.table:
            if key not in EXPORTER_KEYS:
                raise self.error(key, f"unknown key (allowed: {', '.join(EXPORTER_KEYS)})")
        kind = self.kind()
        name = self.get("name", str, "a string") or kind
        if not NAME.fullmatch(name):
            raise self.error("name", f"{name!r}: letters, digits, _ . - (at most 64)")
        max_age = self.duration("max_age", RECEIVERS[kind].max_age)
        limit = RECEIVERS[kind].max_age_limit
        if limit is not None and max_age > limit:
            raise self.error("max_age", f"{kind} refuses profiles older than {limit:g}s")
        return ExporterConfig(
            name=name,
            kind=kind,
            url=self.url(),
            labels=self.labels(),
            targets=self.targets(),
            tenant=self.tenant(),
            queue=self.queue(),
            timeout=self.duration("timeout", 30.0),
            max_age=max_age,
            **self.credentials(),
        )

    def kind(self) -> Kind:
        kind = self.get("kind", str, "a string")
        if kind is None:
            raise self.error("kind", f"missing (one of {', '.join(KINDS)})")
        if kind not in KINDS:
            raise self.error("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        return cast(Kind, kind)

    def url(self) -> str:
        url = self.get("url", str, "a string")
        if url is None:
            raise self.error("url", "missing (the receiver's base URL, e.g. http://host:4040)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error("url", f"{url!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise self.error("url", f"{url!r}: give the base URL, without ?query or #fragment")
        return cast(str, url)

    def labels(self) -> tuple[tuple[str, str], ...]:
        table = self.table.get("labels", {})
        if not isinstance(table, dict):
            raise self.error("labels", 'expected a table of name = "value"')
        labels = {"hostname": self.hostname}
        for name, value in table.items():
            if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise self.error("labels", f"{name!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)")
            if not isinstance(value, str):
                raise self.error("labels", f"{name}: expected a string value")
            labels[name] = value
        return tuple(labels.items())

    def targets(self) -> tuple[str, ...]:
        value = self.table.get("targets", [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error("targets", "expected an array of target names")
        for name in value:
            if self.known_targets is not None and name not in self.known_targets:
                raise self.error("targets", f"no target named {name!r}")
        return tuple(value)

    def tenant(self) -> str | None:
        tenant = self.get("tenant", str, "a string")
        if tenant is not None and (not tenant or any(c in tenant for c in "\r\n")):
            raise self.error("tenant", "must be a non-empty single line")
        return cast("str | None", tenant)

    def queue(self) -> int:
        queue = self.get("queue", int, "an integer")
        if queue is not None and not 1 <= queue <= 10_000:
            raise self.error("queue", "must be between 1 and 10000 buckets")
        return 64 if queue is None else cast(int, queue)

    def duration(self, key: str, default: float) -> float:
        from flamed.daemon.config import parse_duration

        text = self.get(key, str, 'a duration such as "30s"')
        if text is None:
            return default
        try:
            seconds = parse_duration(text)
        except ValueError as err:
            raise self.error(key, str(err)) from None
        if seconds <= 0:
            raise self.error(key, "must be more than zero")
        return seconds

    def credentials(self) -> dict[str, str | None]:
        user = self.get("user", str, "a string")
        password_file = self.get("password_file", str, "a path")
        token_file = self.get("token_file", str, "a path")
        if (user is None) != (password_file is None):
            missing = "password_file" if user is not None else "user"
            raise self.error(missing, "missing (basic auth needs user and password_file)")
        if token_file is not None and user is not None:
            raise self.error("token_file", "give basic auth (user) or a bearer token, not both")
        return {
            "user": user,
            "password_file": password_file,
            "password": self.secret("password_file", password_file),
            "token_file": token_file,
            "token": self.secret("token_file", token_file),
        }

    def secret(self, key: str, path: str | None) -> str | None:
        if path is None:
            return None
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise self.error(key, f"cannot read {path}: {reason}") from None
        if not text or "\n" in text:
            raise self.error(key, f"{path} must hold one non-empty line")
        return text


# -- metrics -------------------------------------------------------------------------------


class ExportMetrics:
    """The exporters' metrics, registered once on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge

        self.pushes = Counter(
            "flamed_export_pushes_total",
            "Push attempts to profile receivers, by result (success, retry, rejected)",
            ["exporter", "result"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "flamed_export_queue_depth",
            "Buckets waiting to be pushed",
            ["exporter"],
            registry=registry,
        )
        self.dropped = Counter(
            "flamed_export_dropped_total",
            "Buckets never pushed, by reason (queue_full, too_old, rejected, shutdown)",
            ["exporter", "reason"],
            registry=registry,
        )

    def add(self, name: str) -> None:
        """Make every series of an exporter exist at zero."""
        for result in RESULTS:
            self.pushes.labels(name, result)
        for reason in DROP_REASONS:
            self.dropped.labels(name, reason)
        self.queue_depth.labels(name).set(0)

    def remove(self, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.queue_depth.remove(name)


# -- pushing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A bucket waiting to be pushed."""

    target: str
    bucket: Bucket
    frequency: float


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
        self._headers = config.headers()
        self._logged: set[int | None] = set()
        self._failing = False
        self._warned_full = False
        metrics.add(config.name)

    @property
    def name(self) -> str:
        return self.config.name

    # -- the producer's side (never blocks) --

    def submit(self, target: str, bucket: Bucket, frequency: float) -> None:
        if not bucket.stacks or not self.config.wants(target):
            return  # an idle bucket says nothing a receiver needs
        if self.queue.full():
            self.queue.get_nowait()
            self.queue.task_done()
            self._drop("queue_full")
            if not self._warned_full:
                self._warned_full = True
                log.warning("exporter %s: queue full; dropping the oldest buckets", self.name)
        self.queue.put_nowait(Pending(target, bucket, frequency))
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
        bucket, receiver = item.bucket, self.config.receiver
        options = PprofOptions(
            frequency=item.frequency,
            start_ns=round(bucket.start * 1e9),
            duration_ns=round((bucket.end - bucket.start) * 1e9),
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
        return request_body(self.config.kind, self.config.push_labels(item.target), fitted.data)

    async def post(self, body: bytes) -> Answer:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self.session.post(
                self.config.endpoint,
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
            self.name, self.config.endpoint, answer.status, item.target, answer.detail[:300],
        )  # fmt: skip

    def _retrying(self, answer: Answer) -> None:
        if self._failing:
            return
        self._failing = True
        what = answer.status if answer.status is not None else "no answer"
        log.warning(
            "exporter %s: %s: %s %s; retrying with backoff",
            self.name, self.config.endpoint, what, answer.detail[:300],
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

    def submit(self, target: str, bucket: Bucket, frequency: float) -> None:
        for exporter in self.exporters.values():
            exporter.submit(target, bucket, frequency)

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
        log.info("exporter %s: pushing to %s (%s)", config.name, config.endpoint, config.kind)


# -- GET /api/v1/pprof ---------------------------------------------------------------------


PPROF_CONTENT_TYPE = "application/octet-stream"


def pprof_for(folded: Folded, *, frequency: float, start: float, end: float, target: str) -> bytes:
    """A merged range of one target as gzip-compressed pprof, labelled with the target."""
    return encode_pprof(
        folded,
        frequency=frequency,
        start_ns=round(start * 1e9),
        duration_ns=max(0, round((end - start) * 1e9)),
        labels={"target": target},
    )
