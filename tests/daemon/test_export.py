"""Pushing buckets to Pyroscope and Parca, against loopback stand-ins that enforce the contract.

The stand-ins are small aiohttp servers written from the receivers' published
APIs: method, path, headers, auth, the JSON shape, base64 and gzip of the
profile, and the profile itself (decoded with protobuf and turned back into
folded stacks). Anything off is recorded as a violation (and answered 400), so
every test ends by asserting there were none. They can be told to answer
400/401/413/422/429/503 first, or to hold requests until released. Backoff
sleeps go through a fake sleep that moves a fake clock: no test waits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from flamed.collapse.folded import OTHER, Folded
from flamed.daemon.export import (
    BACKOFF_CAP,
    Exporter,
    Exporters,
    backoff,
)
from flamed.daemon.exporter_config import ExporterConfig
from flamed.daemon.metrics import ExportMetrics
from flamed.daemon.store import Bucket, make_bucket
from tests.daemon.conftest import T0, FakeClock, wait_for
from tests.render.pprofread import decode_protobuf

MakeServer = Callable[[web.Application], Awaitable[TestServer]]
PYROSCOPE_PATH = "/push.v1.PusherService/Push"
PARCA_PATH = "/api/profiles/writeraw"
SAMPLE_TYPES = {
    "process_cpu": [("samples", "count"), ("cpu", "nanoseconds")],
    "off_cpu": [("off_cpu", "nanoseconds")],
}
"""The profiles a receiver is sent, by ``__name__``, and the sample types each must have."""


# -- the stand-ins -------------------------------------------------------------------------


class Violation(Exception):
    """The request breaks the receiver's contract."""


@dataclass
class Received:
    labels: dict[str, str]
    folded: dict[str, int]
    time_nanos: int
    duration_nanos: int
    samples: int
    ident: str | None


@dataclass
class StandIn:
    """A receiver of one kind; ``plan`` holds statuses to answer before accepting again."""

    kind: str
    pb: ModuleType
    auth: str | None = None
    tenant: str | None = None
    prefix: str = ""
    plan: deque[int] = field(default_factory=deque)
    retry_after: str | None = None
    gate: asyncio.Event | None = None
    received: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    attempts: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        try:
            self.check_request(request)
            if request.headers.get("Authorization") != self.auth:
                return self.error(401, "unauthenticated", "bad credentials")
            series = self.parse(await request.read())
        except Violation as err:
            self.violations.append(str(err))
            return self.error(400, "invalid_argument", str(err))
        if self.plan:
            status = self.plan.popleft()
            return self.error(status, "planned", f"planned {status}")
        self.received.extend(series)
        return web.json_response({})

    def error(self, status: int, code: str, message: str) -> web.Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after and status == 429 else {}
        body = {"code": code, "message": message}
        return web.json_response(body, status=status, headers=headers)

    def check_request(self, request: web.Request) -> None:
        path = self.prefix + (PYROSCOPE_PATH if self.kind == "pyroscope" else PARCA_PATH)
        if request.method != "POST" or request.path != path:
            raise Violation(f"{request.method} {request.path}, not POST {path}")
        if request.headers.get("Content-Type") != "application/json":
            raise Violation(f"Content-Type {request.headers.get('Content-Type')}")
        if self.kind == "pyroscope" and request.headers.get("Connect-Protocol-Version") != "1":
            raise Violation("no Connect-Protocol-Version: 1")
        if request.headers.get("X-Scope-OrgID") != self.tenant:
            raise Violation(f"X-Scope-OrgID {request.headers.get('X-Scope-OrgID')!r}")

    def parse(self, body: bytes) -> list[Received]:
        try:
            data = json.loads(body)
        except ValueError as err:
            raise Violation(f"body is not JSON: {err}") from None
        expect(isinstance(data, dict) and set(data) <= {"series", "tenant", "normalized"}, data)
        series = data.get("series")
        expect(isinstance(series, list) and series, "series: expected a non-empty array")
        return [self.one_series(item) for item in series]

    def one_series(self, item: Any) -> Received:
        expect(isinstance(item, dict) and set(item) == {"labels", "samples"}, "series keys")
        raw_labels = item["labels"]
        if self.kind == "parca":
            expect(isinstance(raw_labels, dict) and set(raw_labels) == {"labels"}, "LabelSet")
            raw_labels = raw_labels["labels"]
        labels = label_pairs(raw_labels)
        expect(labels.get("__name__") in SAMPLE_TYPES, f"__name__ {labels.get('__name__')}")
        expect(bool(labels.get("service_name")), "no service_name")
        samples = item["samples"]
        expect(isinstance(samples, list) and len(samples) == 1, "samples: expected one")
        sample = samples[0]
        key = "rawProfile" if self.kind == "pyroscope" else "raw_profile"
        allowed = {"ID", key} if self.kind == "pyroscope" else {key}
        expect(isinstance(sample, dict) and set(sample) <= allowed and key in sample, sample)
        ident = sample.get("ID")
        if self.kind == "pyroscope":
            expect(isinstance(ident, str) and uuid.UUID(ident).version == 4, "ID: not a uuid4")
        return self.profile(labels, sample[key], ident)

    def profile(self, labels: dict[str, str], raw: Any, ident: str | None) -> Received:
        expect(isinstance(raw, str), "profile: expected a base64 string")
        try:
            data = base64.b64decode(raw, validate=True)
        except ValueError:
            raise Violation("profile: not base64") from None
        expect(data[:2] == b"\x1f\x8b", "profile: not gzip-compressed")
        try:
            decoded = decode_protobuf(self.pb, data)
        except Exception as err:
            raise Violation(f"profile: not a pprof Profile: {err}") from None
        wanted = SAMPLE_TYPES[labels["__name__"]]
        expect(decoded.sample_types == wanted, f"sample types {decoded.sample_types}")
        return Received(
            labels,
            decoded.folded(),
            decoded.time_nanos,
            decoded.duration_nanos,
            len(decoded.samples),
            ident,
        )


async def receiving(aiohttp_server: MakeServer, pb: ModuleType, kind: str) -> tuple[StandIn, str]:
    """A running stand-in of ``kind`` and the ``[[exporters]]`` table that points at it."""
    stand_in = StandIn(kind, pb)
    server = await aiohttp_server(stand_in.app())
    return stand_in, f'\n[[exporters]]\nkind = "{kind}"\nurl = "{server.make_url("/")}"\n'


def expect(condition: bool, what: object) -> None:
    if not condition:
        raise Violation(f"contract: {what}")


def label_pairs(raw: Any) -> dict[str, str]:
    expect(isinstance(raw, list), "labels: expected an array")
    out: dict[str, str] = {}
    for pair in raw:
        ok = isinstance(pair, dict) and set(pair) == {"name", "value"}
        expect(ok and all(isinstance(v, str) for v in pair.values()), f"label {pair}")
        expect(pair["name"] not in out, f"duplicate label {pair['name']}")
        out[pair["name"]] = pair["value"]
    names = [pair["name"] for pair in raw]
    expect(names == sorted(names), "labels not sorted by name")
    return out


# -- fixtures ------------------------------------------------------------------------------


class FakeSleep:
    """Records each backoff and moves the fake clock instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@dataclass
class Rig:
    stand_in: StandIn
    exporter: Exporter
    registry: CollectorRegistry
    clock: FakeClock
    sleep: FakeSleep

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, {"exporter": self.exporter.name, **labels})
        assert value is not None, f"{name} {labels} is not exported"
        return value

    async def idle(self) -> None:
        await asyncio.wait_for(self.exporter.queue.join(), 30)


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig(
    aiohttp_server: MakeServer, session: aiohttp.ClientSession, pb: ModuleType
) -> AsyncIterator[MakeRig]:
    made: list[Exporter] = []

    async def make(kind: str = "pyroscope", prefix: str = "", **options: Any) -> Rig:
        auth, tenant = options.pop("expect_auth", None), options.get("tenant")
        stand_in = StandIn(kind, pb, auth=auth, tenant=tenant, prefix=prefix)
        server = await aiohttp_server(stand_in.app())
        url = str(server.make_url(prefix or "/"))
        options.setdefault("labels", (("hostname", "testhost"),))
        config = ExporterConfig(name=f"{kind}-test", kind=kind, url=url, **options)  # type: ignore[arg-type]
        registry, clock = CollectorRegistry(), FakeClock(T0 + 20)
        sleep = FakeSleep(clock)
        exporter = Exporter(
            config, ExportMetrics(registry), session, clock=clock, sleep=sleep, rand=lambda: 1.0
        )
        exporter.start()
        made.append(exporter)
        return Rig(stand_in, exporter, registry, clock, sleep)

    yield make
    for exporter in made:
        await exporter.stop(timeout=1.0)


def bucket(start: float, text: str, seconds: float = 10.0) -> Bucket:
    folded = Folded()
    for line in text.strip().splitlines():
        stack, count = line.rsplit(" ", 1)
        folded.add(stack, int(count))
    return make_bucket(start, start + seconds, folded, 50_000)


PROFILE = "main;parse;lex 3\nmain;parse;read 7\nmain;render 120\n"


# -- pushing -------------------------------------------------------------------------------


async def test_pyroscope_push(rig: MakeRig) -> None:
    r = await rig(
        "pyroscope",
        prefix="/grafana/profiles",
        user="1234",
        password="s3cret",
        tenant="team-a",
        expect_auth="Basic " + base64.b64encode(b"1234:s3cret").decode(),
        labels=(("hostname", "testhost"), ("env", "prod")),
    )
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    await r.idle()
    assert r.stand_in.violations == []
    [got] = r.stand_in.received
    assert got.folded == {"main;parse;lex": 3, "main;parse;read": 7, "main;render": 120}
    assert got.labels == {
        "__name__": "process_cpu",
        "service_name": "web",
        "target": "web",
        "hostname": "testhost",
        "env": "prod",
    }
    assert got.time_nanos == int(T0 * 1e9) and got.duration_nanos == 10 * 10**9
    assert r.metric("flamed_export_pushes_total", result="success") == 1
    assert r.metric("flamed_export_queue_depth") == 0


async def test_parca_push_with_bearer_token(rig: MakeRig) -> None:
    r = await rig("parca", token="tok-123", expect_auth="Bearer tok-123")
    r.exporter.submit("db", bucket(T0, PROFILE), 99)
    await r.idle()
    assert r.stand_in.violations == []
    [got] = r.stand_in.received
    assert got.labels["__name__"] == "process_cpu" and got.labels["target"] == "db"
    assert sum(got.folded.values()) == 130
    assert got.ident is None


@pytest.mark.parametrize("kind", ["pyroscope", "parca"])
async def test_offcpu_buckets_are_pushed_as_off_cpu_nanoseconds(rig: MakeRig, kind: str) -> None:
    """An off-CPU bucket counts microseconds blocked: its own profile name, nanoseconds."""
    r = await rig(kind)
    r.exporter.submit("db", bucket(T0, "main;read;schedule 250000\nmain;lock 40\n"), 99, "offcpu")
    r.exporter.submit("db", bucket(T0, PROFILE), 99)
    await r.idle()
    assert r.stand_in.violations == []
    off, cpu = r.stand_in.received
    assert off.labels["__name__"] == "off_cpu" and off.labels["target"] == "db"
    assert off.folded == {"main;read;schedule": 250_000_000, "main;lock": 40_000}
    assert cpu.labels["__name__"] == "process_cpu" and sum(cpu.folded.values()) == 130


async def test_buckets_arrive_once_and_in_order(rig: MakeRig) -> None:
    r = await rig()
    r.stand_in.plan.extend([503, 503, 429])
    starts = [T0 - 40 + 10 * i for i in range(5)]
    for start in starts:
        r.exporter.submit("web", bucket(start, f"main;at{int(start)} 1"), 99)
    await r.idle()
    assert r.stand_in.violations == []
    assert [got.time_nanos for got in r.stand_in.received] == [int(s * 1e9) for s in starts]
    assert [next(iter(got.folded)) for got in r.stand_in.received] == [
        f"main;at{int(s)}" for s in starts
    ]
    assert r.metric("flamed_export_pushes_total", result="success") == 5
    assert r.metric("flamed_export_pushes_total", result="retry") == 3


async def test_retry_uses_the_same_sample_id(rig: MakeRig) -> None:
    r = await rig()
    seen: list[bytes] = []
    original = r.exporter.post

    async def spy(body: bytes) -> Any:
        seen.append(body)
        return await original(body)

    r.exporter.post = spy  # type: ignore[method-assign]
    r.stand_in.plan.extend([503])
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    await r.idle()
    assert len(seen) == 2 and seen[0] == seen[1]


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_retried_statuses_back_off_exponentially(rig: MakeRig, status: int) -> None:
    r = await rig()
    r.stand_in.plan.extend([status] * 9)
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    await r.idle()
    assert r.sleep.delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert len(r.stand_in.received) == 1
    assert r.metric("flamed_export_pushes_total", result="retry") == 9


async def test_retry_after_is_honoured_up_to_the_cap(rig: MakeRig) -> None:
    r = await rig()
    r.stand_in.retry_after = "7"
    r.stand_in.plan.extend([429])
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    await r.idle()
    assert r.sleep.delays == [7]
    r.stand_in.retry_after = "3600"
    r.stand_in.plan.extend([429])
    r.exporter.submit("web", bucket(T0 + 10, PROFILE), 99)
    await r.idle()
    assert r.sleep.delays == [7, BACKOFF_CAP]


def test_backoff_jitter_stays_within_half_and_whole() -> None:
    for attempt in range(12):
        low, high = backoff(attempt, 0.0), backoff(attempt, 1.0)
        assert high == min(BACKOFF_CAP, 2.0**attempt)
        assert low == high / 2
        assert low <= backoff(attempt, 0.37) <= high
    assert backoff(5000, 1.0) == BACKOFF_CAP


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
async def test_other_client_errors_drop_without_retry_and_log_once(
    rig: MakeRig, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    r = await rig()
    r.stand_in.plan.extend([status, status])
    with caplog.at_level(logging.ERROR, "flamed.daemon.export"):
        for i in range(3):
            r.exporter.submit("web", bucket(T0 + 10 * i, f"main;b{i} 1"), 99)
        await r.idle()
    assert r.sleep.delays == []
    assert [next(iter(got.folded)) for got in r.stand_in.received] == ["main;b2"]
    assert r.metric("flamed_export_dropped_total", reason="rejected") == 2
    assert r.metric("flamed_export_pushes_total", result="rejected") == 2
    logged = [rec for rec in caplog.records if str(status) in rec.getMessage()]
    assert len(logged) == 1
    assert r.stand_in.violations == []


async def test_wrong_credentials_are_refused_by_the_stand_in(rig: MakeRig) -> None:
    r = await rig(
        user="u", password="wrong", expect_auth="Basic " + base64.b64encode(b"u:p").decode()
    )
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    await r.idle()
    assert r.stand_in.received == []
    assert r.metric("flamed_export_dropped_total", reason="rejected") == 1


async def test_old_buckets_are_dropped_not_sent(rig: MakeRig) -> None:
    r = await rig()
    r.exporter.submit("web", bucket(T0 - 3400, PROFILE), 99)  # over Pyroscope's 55 min
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    await r.idle()
    assert r.stand_in.attempts == 1
    assert [got.time_nanos for got in r.stand_in.received] == [int(T0 * 1e9)]
    assert r.metric("flamed_export_dropped_total", reason="too_old") == 1


async def test_a_dead_receiver_ages_buckets_out_instead_of_retrying_forever(rig: MakeRig) -> None:
    r = await rig()
    r.stand_in.plan.extend([503] * 1000)
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    r.exporter.submit("web", bucket(T0 + 10, PROFILE), 99)
    await r.idle()
    assert r.stand_in.received == []
    assert r.metric("flamed_export_dropped_total", reason="too_old") == 2
    assert r.clock() - T0 <= 3300 + BACKOFF_CAP + 20
    assert r.stand_in.attempts < 100


async def test_connection_errors_are_retried(
    session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    registry, clock = CollectorRegistry(), FakeClock(T0)
    sleep = FakeSleep(clock)
    config = ExporterConfig("dead", "parca", f"http://127.0.0.1:{unused_tcp_port}", timeout=5.0)
    exporter = Exporter(config, ExportMetrics(registry), session, clock=clock, sleep=sleep,
                        rand=lambda: 1.0)  # fmt: skip
    exporter.start()
    exporter.submit("web", bucket(T0, PROFILE), 99)
    await asyncio.wait_for(exporter.queue.join(), 60)
    labels = {"exporter": "dead"}
    assert (
        registry.get_sample_value("flamed_export_dropped_total", {**labels, "reason": "too_old"})
        == 1
    )
    retries = registry.get_sample_value("flamed_export_pushes_total", {**labels, "result": "retry"})
    assert retries is not None and retries >= 10
    await exporter.stop(timeout=1.0)


async def test_queue_is_bounded_and_drops_the_oldest_waiting(rig: MakeRig) -> None:
    r = await rig(queue=3)
    r.stand_in.gate = asyncio.Event()
    r.exporter.submit("web", bucket(T0, "main;b0 1"), 99)
    await wait_for(lambda: r.stand_in.attempts > 0)  # the first is in flight, held by the gate
    for i in range(1, 7):
        r.exporter.submit("web", bucket(T0 + 10 * i, f"main;b{i} 1"), 99)  # never blocks
    assert r.exporter.queue.qsize() == 3
    assert r.metric("flamed_export_queue_depth") == 3
    assert r.metric("flamed_export_dropped_total", reason="queue_full") == 3
    r.stand_in.gate.set()
    await r.idle()
    names = [next(iter(got.folded)) for got in r.stand_in.received]
    assert names == ["main;b0", "main;b4", "main;b5", "main;b6"]
    assert r.metric("flamed_export_queue_depth") == 0


async def test_profiles_over_pyroscope_limits_are_reduced(rig: MakeRig) -> None:
    r = await rig()
    text = "\n".join(f"main;f{i % 50};leaf{i} {i + 1}" for i in range(20_000))
    r.exporter.submit("web", bucket(T0, text), 99)
    await r.idle()
    [got] = r.stand_in.received
    assert got.samples <= 16_000
    assert OTHER in got.folded
    assert sum(got.folded.values()) == sum(range(1, 20_001))


async def test_empty_buckets_are_not_pushed(rig: MakeRig) -> None:
    r = await rig()
    r.exporter.submit("web", make_bucket(T0, T0 + 10, Folded(), 50_000), 99)
    r.exporter.submit("web", bucket(T0 + 10, PROFILE), 99)
    await r.idle()
    assert r.stand_in.attempts == 1
    assert [got.time_nanos for got in r.stand_in.received] == [int((T0 + 10) * 1e9)]


async def test_targets_filter(rig: MakeRig) -> None:
    r = await rig(targets=("a",))
    r.exporter.submit("b", bucket(T0, PROFILE), 99)
    r.exporter.submit("a", bucket(T0, PROFILE), 99)
    await r.idle()
    assert [got.labels["target"] for got in r.stand_in.received] == ["a"]


async def test_profiles_filter(rig: MakeRig) -> None:
    r = await rig(profiles=("cpu",))
    r.exporter.submit("a", bucket(T0, "main;read 250\n"), 99, "offcpu")
    r.exporter.submit("a", bucket(T0, PROFILE), 99)
    await r.idle()
    assert [got.labels["__name__"] for got in r.stand_in.received] == ["process_cpu"]


async def test_service_name_can_be_set_and_hostname_left_out(rig: MakeRig) -> None:
    r = await rig(labels=(("hostname", ""), ("service_name", "shop")))
    r.exporter.submit("web", bucket(T0, PROFILE), 99)
    await r.idle()
    [got] = r.stand_in.received
    assert got.labels == {"__name__": "process_cpu", "service_name": "shop", "target": "web"}


async def test_stop_pushes_what_is_queued_then_drops_the_rest(rig: MakeRig) -> None:
    r = await rig()
    for i in range(3):
        r.exporter.submit("web", bucket(T0 + 10 * i, f"main;b{i} 1"), 99)
    await r.exporter.stop(timeout=30)
    assert len(r.stand_in.received) == 3
    assert r.metric("flamed_export_dropped_total", reason="shutdown") == 0

    r2 = await rig()
    r2.stand_in.gate = asyncio.Event()  # never answers
    for i in range(3):
        r2.exporter.submit("web", bucket(T0 + 10 * i, f"main;b{i} 1"), 99)
    await r2.exporter.stop(timeout=0.2)
    assert r2.metric("flamed_export_dropped_total", reason="shutdown") == 3  # 1 in flight
    assert r2.metric("flamed_export_queue_depth") == 0
    r2.stand_in.gate.set()


# -- several exporters and reloads ---------------------------------------------------------


async def test_exporters_fan_out_and_reload(aiohttp_server: MakeServer, pb: ModuleType) -> None:
    pyro, parca = StandIn("pyroscope", pb), StandIn("parca", pb)
    urls = []
    for stand_in in (pyro, parca):
        server = await aiohttp_server(stand_in.app())
        urls.append(str(server.make_url("/")))
    registry, clock = CollectorRegistry(), FakeClock(T0 + 20)
    configs = (
        ExporterConfig("p1", "pyroscope", urls[0]),
        ExporterConfig("p2", "parca", urls[1]),
    )
    exporters = Exporters(configs, registry=registry, clock=clock, sleep=FakeSleep(clock))
    await exporters.start()
    try:
        exporters.submit("web", bucket(T0, PROFILE), 99)
        await asyncio.wait_for(
            asyncio.gather(*(e.queue.join() for e in exporters.exporters.values())), 30
        )
        assert len(pyro.received) == 1 and len(parca.received) == 1
        await exporters.apply(configs[:1])
        assert list(exporters.exporters) == ["p1"]
        assert registry.get_sample_value("flamed_export_queue_depth", {"exporter": "p2"}) is None
        exporters.submit("web", bucket(T0 + 10, PROFILE), 99)
        await asyncio.wait_for(exporters.exporters["p1"].queue.join(), 30)
        assert len(pyro.received) == 2 and len(parca.received) == 1
    finally:
        await exporters.stop(timeout=1.0)
    assert exporters.session is None
    assert pyro.violations == [] and parca.violations == []


async def test_no_exporters_no_session() -> None:
    exporters = Exporters((), registry=CollectorRegistry())
    await exporters.start()
    exporters.submit("web", bucket(T0, PROFILE), 99)
    await exporters.stop()
    assert exporters.session is None


# -- the [[exporters]] tables --------------------------------------------------------------
